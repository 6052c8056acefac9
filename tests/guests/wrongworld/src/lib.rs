//! `wrongworld`: a well-formed component that is not a stage.
//!
//! It exports `run: func() -> string` from its own world and imports nothing
//! from weft, so uploading it must fail validation against `weft:stage/stage`
//! with a clear message rather than at the first invocation.

wit_bindgen::generate!({
    path: "wit",
    world: "wrongworld",
});

/// The component's one export.
#[derive(Debug)]
struct WrongWorld;

impl Guest for WrongWorld {
    fn run() -> String {
        "wrongworld: I am not a weft stage".to_string()
    }
}

export!(WrongWorld);
