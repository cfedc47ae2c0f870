//! Writes every fuzz target's hand-made seed inputs to `fuzz/seeds/<target>/<name>`,
//! replacing what is there. Run after changing a seed:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, seeds) in bulwark_fuzz::all_seeds() {
        let dir = root.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        if seeds.is_empty() {
            continue;
        }
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes)?;
        }
        eprintln!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
