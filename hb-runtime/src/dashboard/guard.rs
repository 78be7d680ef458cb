//! Who may use the dashboard: the token (when one is set) or a loopback host (when none is),
//! actions only from the dashboard's own pages, and the headers that keep its pages from
//! being framed or loading anything from elsewhere.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

const COOKIE: &str = "hb_dashboard_token";

/// Equal, in a time that does not depend on where they differ.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `host` (a Host header: a name or address, with a port or not) is this machine.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:8080`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request carries `token`, as `Authorization: Bearer` or in the cookie (either
/// matching is enough).
fn token_given(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value);
    bearer.is_some_and(|b| same(b.as_bytes(), token.as_bytes()))
        || cookies.any(|c| same(c.as_bytes(), token.as_bytes()))
}

/// Why a request without a token is not from this machine, if it is not: its peer (known when
/// the server was given connect info), its Host, or a proxy's forwarding headers.
fn not_local(req: &Request) -> Option<&'static str> {
    use axum::extract::ConnectInfo;
    use axum::extract::connect_info::MockConnectInfo;
    type Addr = std::net::SocketAddr;
    // What axum's `ConnectInfo` extractor reads (a test's mock, when there is no server).
    let peer = req
        .extensions()
        .get::<ConnectInfo<Addr>>()
        .map(|c| c.0.ip())
        .or_else(|| {
            req.extensions()
                .get::<MockConnectInfo<Addr>>()
                .map(|m| m.0.ip())
        });
    match peer {
        None => {
            return Some(
                "this dashboard has no token, so it serves only connections from this machine, and cannot tell where this one comes from: serve its router with `into_make_service_with_connect_info::<SocketAddr>()` (Dashboard::serve does), or give it a token",
            );
        }
        Some(ip) if !ip.is_loopback() => {
            return Some(
                "this dashboard has no token, so it serves only connections from this machine",
            );
        }
        Some(_) => {}
    }
    let h = req.headers();
    if ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|name| h.contains_key(*name))
    {
        return Some(
            "this dashboard has no token, so it does not serve requests a proxy forwards: give it a token",
        );
    }
    let host = h
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !loopback_host(host) {
        return Some(
            "this dashboard has no token, so it answers only at localhost, 127.0.0.1 or [::1]",
        );
    }
    None
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Lets a request in, or answers it: 401 without the token; with no token set, 403 for a
/// request that is not from this machine (its peer, its Host, a proxy's headers). A `?token=`
/// that matches is kept in a cookie and taken out of the address.
pub(super) async fn admit(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let response = match &shared.token {
        Some(token) => {
            let query = req.uri().query().unwrap_or("");
            let from_query = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned());
            if let Some(given) = from_query {
                if !same(given.as_bytes(), token.as_bytes()) {
                    return with_headers(refuse(StatusCode::UNAUTHORIZED, "wrong dashboard token"));
                }
                return with_headers(keep_token(&req, query, token));
            }
            if token_given(req.headers(), token) {
                next.run(req).await
            } else {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token: open it with ?token=<token>, or send Authorization: Bearer <token>",
                )
            }
        }
        None => match not_local(&req) {
            None => next.run(req).await,
            Some(why) => {
                tracing::warn!("dashboard: refused a request that is not from this machine");
                refuse(StatusCode::FORBIDDEN, why)
            }
        },
    };
    with_headers(response)
}

/// The answer to a right `?token=`: the same address without it, and the token in a cookie for
/// the dashboard's path.
fn keep_token(req: &Request, query: &str, token: &str) -> Response {
    let rest: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "token"))
        .finish();
    // The whole path: nested in an app, the router sees its own part only. One leading slash:
    // `//host/x` would send the browser to another site.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or(req.uri().path(), |u| u.0.path());
    let path = format!("/{}", path.trim_start_matches(['/', '\\']));
    let to = if rest.is_empty() {
        path
    } else {
        format!("{path}?{rest}")
    };
    let mount = req
        .extensions()
        .get::<axum::extract::NestedPath>()
        .map_or("/", |n| n.as_str());
    let cookie = format!("{COOKIE}={token}; Path={mount}; HttpOnly; SameSite=Lax");
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The headers every answer carries.
fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Whether a POST came from another site. A browser that says where it comes from
/// (`Sec-Fetch-Site`) is believed; one that does not is judged by its `Origin` (an opaque
/// `null` origin counts as another site), and a client that sends neither (not a browser) by
/// the page secret alone.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = get("sec-fetch-site") {
        return site != "same-origin";
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => {
            let origin = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            origin != Some(host)
        }
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_this_machine_and_nothing_else() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:80",
            "LOCALHOST:1",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "",
            "example.com",
            "localhost.example.com:80",
            "10.0.0.1:8080",
            "[::2]:80",
            "127.0.0.1.nip.io",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_post_is_cross_site_when_the_browser_or_its_origin_says_so() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(!cross_site(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!cross_site(&h(&[("sec-fetch-site", "same-origin")])));
        // What Chromium sends for a form of the page itself under `Referrer-Policy: no-referrer`.
        assert!(!cross_site(&h(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "null")
        ])));
        assert!(cross_site(&h(&[("sec-fetch-site", "same-site")])));
        assert!(cross_site(&h(&[("sec-fetch-site", "none")])));
        assert!(!cross_site(&h(&[]))); // not a browser: the form's secret decides
        assert!(cross_site(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&h(&[("origin", "null")])));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
