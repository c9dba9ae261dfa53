#!/usr/bin/env bash
# Generate the files the .deb ships besides the binary: the man page and the
# shell completions, from the clap definitions of the release binary.
# Run from the repository root after `cargo build --release`.
set -euo pipefail
bin=target/release/statsyard
out=target/assets
mkdir -p "$out"
"$bin" man | gzip -9n > "$out/statsyard.1.gz"
"$bin" completions bash > "$out/statsyard.bash"
"$bin" completions zsh > "$out/_statsyard"
"$bin" completions fish > "$out/statsyard.fish"
