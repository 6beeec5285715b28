//! Test component that exports `run: func() -> u32` instead of the `step-executor` world, while
//! its manifest still claims kind `step-executor`, so the host must reject it when loading.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p wrong-world` in `plugins/`.
wit_bindgen::generate!({
    inline: r#"
        package runledger-testing:wrong-world;

        world wrong-world {
            export run: func() -> u32;
        }
    "#,
});

struct WrongWorld;

impl Guest for WrongWorld {
    fn run() -> u32 {
        42
    }
}

export!(WrongWorld);
