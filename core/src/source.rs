//! Sources: how a provider signs its requests and where its events keep their
//! type and id.
//!
//! Owns: the signature schemes ([`verify`]) and the presets with their
//! extractors and envelopes ([`presets`]).
//! Never: reads the environment, the clock or the network.

pub mod presets;
pub mod verify;

/// `a, b or c`: the names of an enum's values, for error messages.
fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
