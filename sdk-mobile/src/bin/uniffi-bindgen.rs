//! The uniffi bindings generator, pinned to the crate's uniffi version so the
//! generated Swift, Kotlin and Python always match the library's scaffolding.
//! Used by `scripts/build-bindings.sh` in library mode.

fn main() {
    uniffi::uniffi_bindgen_main()
}
