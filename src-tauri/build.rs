use std::path::Path;

fn main() {
    // `generate_context!` embeds ../ui/dist and fails when it is missing. A workspace-wide
    // `cargo check`/`clippy` must work before anyone ran `npm run build`, so a placeholder
    // page stands in until the real front end is built (scripts/test-ui and scripts/run build it).
    let dist = Path::new("../ui/dist");
    if !dist.join("index.html").exists() {
        let _ = std::fs::create_dir_all(dist);
        let _ = std::fs::write(
            dist.join("index.html"),
            "<!doctype html><title>Keycard Broker</title><p>The window's front end is not built: run <code>npm --prefix ui ci &amp;&amp; npm --prefix ui run build</code>, then rebuild.</p>\n",
        );
    }
    println!("cargo:rerun-if-changed=../ui/dist");
    tauri_build::build()
}
