pub mod presets;
pub mod verify;
