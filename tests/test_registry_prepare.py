"""The registry session's own request preparation (``_Session.prepared``, which skips requests'
``prepare_request`` where that changes nothing) against requests' own: the same method, URL,
headers in the same order, body and hooks; requests' path wherever they could differ."""

from __future__ import annotations

import pytest
import requests

from signaction.registry.transport import _Session, _SetAuthorization

HOST = "http://127.0.0.1:5000"
SIG = "sha256-" + "a" * 64 + ".sig"
AS_IS = [
    f"{HOST}/v2/ns/app/manifests/{SIG}",
    f"{HOST}/v2/ns/app/blobs/uploads/?digest=sha256%3A{'b' * 64}",
    f"{HOST}/v2/ns/app/blobs/uploads/",
    f"{HOST}/v2/ns/app/blobs/uploads/6f1c-4e?_state=AbC-_%3D%3D&digest=sha256%3A{'c' * 64}",
    f"{HOST}/v2/ns/app/blobs/uploads/?mount=sha256%3A{'d' * 64}&from=ns%2Fother",
    "https://registry.example.com/v2/a/b-c/d_e/manifests/v1.0",
    "https://registry.example.com:8443/v2/library/x/referrers/sha256:" + "e" * 64,
    "https://auth.example.com/token?service=registry&scope=repository:a/b:pull,push",
]
REPREPARED = [  # what requests' prepare_url changes, or may: requests' own path
    "HTTP://127.0.0.1:5000/v2/x/manifests/v1",  # scheme lower-cased
    "http://Registry.Example.com/v2/x/manifests/v1",  # host lower-cased
    "http://127.0.0.1:05000/v2/x/manifests/v1",  # port's leading zero
    "http://127.0.0.1:5000/v2/x/./manifests/v1",  # a dot segment
    "http://127.0.0.1:5000/v2/x/../manifests/v1",
    "http://127.0.0.1:5000/v2/x/blobs/uploads/?",  # an empty query dropped
    "http://127.0.0.1:5000/v2/x/blobs/uploads/?a=%2d",  # an escaped unreserved character
    "http://127.0.0.1:5000/v2/x/blobs/uploads/?a=%2D",
    "http://127.0.0.1:5000/v2/x/blobs/uploads/?a=b c",  # quoted
    "http://127.0.0.1:5000/v2/x/blobs/uploads/?a=%zz",
    "http://127.0.0.1:5000/v2/x/tags/list#frag",
    "http://127.0.0.1:5000",
    "http://user:pw@127.0.0.1:5000/v2/x/manifests/v1",
    "http://[::1]:5000/v2/x/manifests/v1",
    "http://h\u00e9st/v2/x/manifests/v1",
]
HEADERS = [None, {}, {"Accept": "application/vnd.oci.image.manifest.v1+json, */*"},
           {"Content-Type": "application/octet-stream"},
           {"If-Match": '"sha256:' + "f" * 64 + '"', "Content-Type": "x/y"},
           {"user-agent": "other", "Accept-Encoding": None}]


def theirs(session: _Session, method, url, headers, data, auth) -> requests.PreparedRequest:
    return session.prepare_request(requests.Request(method, url, headers=dict(headers or {}),
                                                    data=data, auth=auth))


def same(a: requests.PreparedRequest, b: requests.PreparedRequest) -> None:
    assert (a.method, a.url, a.body) == (b.method, b.url, b.body)
    assert list(a.headers.items()) == list(b.headers.items())
    assert a.hooks == b.hooks and dict(vars(a)["_cookies"]) == dict(vars(b)["_cookies"])


@pytest.mark.parametrize("url", AS_IS)
@pytest.mark.parametrize("headers", HEADERS)
@pytest.mark.parametrize("method,data", [("GET", None), ("HEAD", None), ("POST", None),
                                         ("POST", b"payload"), ("PUT", b"{}"), ("PUT", b""),
                                         ("PUT", None)])
@pytest.mark.parametrize("authorization", [None, "Bearer t0k.en", "Basic dTpw"])
def test_prepared_as_requests_prepares(url, headers, method, data, authorization):
    session = _Session()
    session.headers["User-Agent"] = "signaction-registry-client"
    auth = _SetAuthorization(authorization)
    ours = session.prepared(method, url, headers, data, auth)
    assert ours is not None
    same(ours, theirs(session, method, url, headers, data, auth))


@pytest.mark.parametrize("url", REPREPARED)
def test_a_url_requests_would_change_goes_its_way(url):
    assert _Session().prepared("GET", url, None, None, _SetAuthorization(None)) is None


def test_cookies_hooks_and_odd_methods_go_requests_way():
    session = _Session()
    url, auth = AS_IS[0], _SetAuthorization(None)
    assert session.prepared("get", url, None, None, auth) is None
    assert session.prepared("OPTIONS", url, None, None, auth) is None
    session.cookies.set("sticky", "1")  # e.g. a load balancer's: requests sends it back
    assert session.prepared("GET", url, None, None, auth) is None
    session.cookies.clear()
    session.hooks["response"].append(lambda r, **_: r)
    assert session.prepared("GET", url, None, None, auth) is None


def test_a_header_requests_refuses_is_refused():
    with pytest.raises(requests.exceptions.InvalidHeader):
        _Session().prepared("GET", AS_IS[0], {"Authorization": "Bearer a\r\nX: y"}, None,
                            _SetAuthorization(None))
