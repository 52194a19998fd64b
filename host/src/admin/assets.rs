//! The dashboard's files, built into the binary (it works offline; nothing is
//! fetched from elsewhere): `GET /` is the page, `GET /assets/{file}` the rest.
//! Plain JavaScript modules and CSS, no build step (`dashboard/`).
//!
//! Owns: which files exist and their content types.
//! Never: serves anything that is not in [`FILES`]; there is no file system
//! access behind these routes.

use hyper::StatusCode;

use super::api::{self, Answer, ApiError};
use super::routes::Call;

struct File {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! files {
    ($($name:literal => $type:expr,)*) => {
        &[$(File {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("dashboard/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file; `/` is `index.html`.
static FILES: &[File] = files! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "icon.svg" => "image/svg+xml",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "json.js" => JS,
    "chart.js" => JS,
    "events.js" => JS,
    "event.js" => JS,
    "dead.js" => JS,
    "plugins.js" => JS,
    "routes.js" => JS,
    "overview.js" => JS,
};

fn serve(name: &str) -> Answer {
    let f = FILES
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard file {name:?}")))?;
    Ok(api::bytes(StatusCode::OK, f.content_type, f.body))
}

pub(super) async fn index(_: Call<'_>) -> Answer {
    serve("index.html")
}

pub(super) async fn file(c: Call<'_>) -> Answer {
    serve(c.param(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        // Each `from "./x.js"` in a served file names a served file, so the
        // page never asks for something missing.
        for f in FILES {
            for part in f.body.split("from \"./").skip(1) {
                let name = part.split('"').next().unwrap();
                assert!(
                    FILES.iter().any(|g| g.name == name),
                    "{} imports {name}, which is not served",
                    f.name
                );
            }
            assert_eq!(f.content_type == JS, f.name.ends_with(".js"), "{}", f.name);
        }
        // Nothing reaches another origin (the SVG namespace is a name, never
        // fetched), and no data is ever parsed as HTML or run as code.
        for f in FILES {
            let body = f.body.replace("http://www.w3.org/2000/svg", "");
            for banned in [
                "http://",
                "https://",
                "//cdn",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                " onclick=",
                "style=",
            ] {
                assert!(!body.contains(banned), "{} contains {banned:?}", f.name);
            }
        }
    }
}
