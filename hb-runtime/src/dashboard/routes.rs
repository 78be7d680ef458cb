//! The dashboard's routes: its two pages, their live streams, the actions, the assets.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Form, NestedPath, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;

use super::pages::{self, ListParams, PAGE};
use super::source::{Acted, Action, Source};
use super::{Shared, guard, live, page_query};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(list))
        .route("/live/rows", get(list_live))
        .route("/activity", get(activity))
        .route("/live/activity", get(activity_live))
        .route("/activity/{action}", post(act))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            guard::admit,
        ))
        .with_state(shared)
}

/// Where the dashboard is mounted (`""` at the root): what its pages' links are relative to.
fn base(parts: &Parts) -> String {
    parts
        .extensions
        .get::<NestedPath>()
        .map(|n| n.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

fn page(shared: &Shared, parts: &Parts, status: StatusCode, title: &str, body: Markup) -> Response {
    let banner = match (&shared.source, shared.source.engine_running()) {
        (_, true) => None,
        (Source::Engine(_), false) => Some(
            "The engine has shut down: what you see is as it was left, and actions are refused.",
        ),
        (Source::File { .. }, false) => Some(
            "No engine has this file open: what you see is as it was left, and actions wait for the next engine to open it.",
        ),
    };
    let html = pages::layout(&base(parts), title, &shared.source.label(), banner, body);
    (status, [(header::CACHE_CONTROL, "no-store")], html).into_response()
}

fn problem(shared: &Shared, parts: &Parts, status: StatusCode, message: &str) -> Response {
    page(
        shared,
        parts,
        status,
        "problem",
        pages::problem(&base(parts), message),
    )
}

async fn list(State(shared): State<Arc<Shared>>, parts: Parts) -> Response {
    let params = match Query::<ListParams>::try_from_uri(&parts.uri) {
        Ok(Query(p)) => p,
        Err(e) => return problem(&shared, &parts, StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let read = async {
        let rows = shared.source.page(page_query(&params, PAGE + 1)).await?;
        Ok::<_, String>((shared.source.summary().await?, rows))
    };
    match read.await {
        Ok((summary, mut rows)) => {
            let more = rows.len() > PAGE;
            rows.truncate(PAGE);
            let body = pages::list(
                &base(&parts),
                &params,
                &summary,
                &rows,
                more,
                SystemTime::now(),
            );
            page(&shared, &parts, StatusCode::OK, "activities", body)
        }
        Err(e) => problem(&shared, &parts, StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

/// A live stream, holding its place among [`live::MAX_STREAMS`] until it ends.
fn stream<S>(shared: &Shared, events: S) -> Response
where
    S: futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>
        + Send
        + 'static,
{
    use futures_util::StreamExt;
    let Ok(place) = shared.streams.clone().try_acquire_owned() else {
        tracing::warn!(
            open = live::MAX_STREAMS,
            "dashboard: refused a live page: too many open"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} live pages are open already\n", live::MAX_STREAMS),
        )
            .into_response();
    };
    let events = events.map(move |e| {
        let _ = &place;
        e
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn list_live(
    State(shared): State<Arc<Shared>>,
    parts: Parts,
    Query(params): Query<ListParams>,
) -> Response {
    stream(&shared, live::rows(shared.clone(), params, base(&parts)))
}

#[derive(serde::Deserialize)]
struct Which {
    id: String,
    /// The action just done (a fixed set: the flash is never what the address says).
    done: Option<String>,
    queued: Option<String>,
}

async fn activity(State(shared): State<Arc<Shared>>, parts: Parts) -> Response {
    let which = match Query::<Which>::try_from_uri(&parts.uri) {
        Ok(Query(w)) => w,
        Err(e) => return problem(&shared, &parts, StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let flash = match (which.done.as_deref(), which.queued.as_deref()) {
        (Some("cancel"), _) => Some("Cancel requested."),
        (Some("pause"), _) => Some("Paused."),
        (Some("unpause"), _) => Some("Unpaused."),
        (Some("reset"), _) => Some("Reset: the next attempt is attempt 1."),
        (_, Some(_)) => Some("Requested: the engine applies it within a second."),
        _ => None,
    };
    match shared.source.describe(&which.id, true).await {
        Ok(Some((d, input))) => {
            let body = pages::activity(
                &base(&parts),
                &d,
                input.as_ref(),
                &shared.csrf,
                flash,
                SystemTime::now(),
            );
            page(&shared, &parts, StatusCode::OK, &d.id, body)
        }
        Ok(None) => problem(
            &shared,
            &parts,
            StatusCode::NOT_FOUND,
            &format!("No activity with id `{}`.", which.id),
        ),
        Err(e) => problem(&shared, &parts, StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

#[derive(serde::Deserialize)]
struct Id {
    id: String,
}

async fn activity_live(
    State(shared): State<Arc<Shared>>,
    parts: Parts,
    Query(Id { id }): Query<Id>,
) -> Response {
    stream(&shared, live::activity(shared.clone(), id, base(&parts)))
}

#[derive(serde::Deserialize)]
struct ActionForm {
    id: String,
    /// Missing is refused as wrong is (403), not as a malformed form.
    #[serde(default)]
    csrf: String,
    clear: Option<String>,
}

async fn act(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    parts: Parts,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if !guard::same(form.csrf.as_bytes(), shared.csrf.as_bytes()) || guard::cross_site(&headers) {
        tracing::warn!(action = %name, "dashboard: refused an action that did not come from its own page");
        return problem(
            &shared,
            &parts,
            StatusCode::FORBIDDEN,
            "Refused: actions are taken only from the dashboard's own pages (reload the page and try again).",
        );
    }
    let Some(action) = Action::parse(&name, form.clear.is_some()) else {
        return problem(&shared, &parts, StatusCode::NOT_FOUND, "No such action.");
    };
    match shared.source.act(&form.id, action).await {
        Ok(acted) => {
            tracing::info!(id = %form.id, action = action.name(), "dashboard: action taken");
            let key = match acted {
                Acted::Done => "done",
                Acted::Queued => "queued",
            };
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("id", &form.id)
                .append_pair(key, action.name())
                .finish();
            let to = format!("{}/activity?{q}", base(&parts));
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
        Err(message) => problem(
            &shared,
            &parts,
            StatusCode::CONFLICT,
            &format!("Could not {} {}: {message}", action.name(), form.id),
        ),
    }
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}
