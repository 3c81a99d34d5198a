//! `ruang node` for operators: its own identity by default, one process per identity,
//! periodic stats in JSON mode, Prometheus metrics; and the Debian package.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::*;
use anyhow::{Context, Result};

const T: Duration = Duration::from_secs(15);

fn scrape(url: &str) -> Result<String> {
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .context("metrics url")?;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(T))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn a_node_runs_as_itself_once_with_stats_and_metrics() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let args = [
        "node",
        "--json",
        "--stats-every",
        "1",
        "--metrics",
        "127.0.0.1:0",
    ];
    let mut node = Proc::start_with_default_identity(dir.path(), "op", &args)?;
    let ready = node.wait_event(T, "ready")?;
    let config = dir.path().join("op").join("ruang");
    assert!(config.join("node.key").exists(), "node.key in {config:?}");
    assert!(
        !config.join("identity.key").exists(),
        "the node did not take the user's identity"
    );
    // Not the person's identity: `ruang id` (same folder) is another peer.
    let id = ruang()
        .args(["id", "--json"])
        .env("XDG_CONFIG_HOME", dir.path().join("op"))
        .output()?;
    let id: serde_json::Value = serde_json::from_slice(&id.stdout)?;
    assert_ne!(id["peer_id"], ready["peer_id"]);

    // Periodic stats.
    let stats = node.wait_event(T, "stats")?;
    for field in ["connected_peers", "rooms_in_directory", "audio_links"] {
        assert!(stats[field].is_u64(), "{field} in {stats}");
    }

    // Metrics: ruang's gauges and libp2p's counters.
    let url = ready["metrics"].as_str().context("metrics url in ready")?;
    let text = scrape(url)?;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for name in [
        "ruang_connected_peers",
        "ruang_directory_rooms",
        "libp2p_swarm_",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }

    // A second node with the same identity is refused, saying why.
    let second = ruang()
        .args([
            "node",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .env("XDG_CONFIG_HOME", dir.path().join("op"))
        .output()?;
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second node ran: {stderr}");
    assert!(stderr.contains("in use by another ruang"), "{stderr}");

    node.kill();
    // Its lock went with it: the identity can run again.
    let mut again = Proc::start_with_default_identity(dir.path(), "op", &args)?;
    let ready_again = again.wait_event(T, "ready")?;
    assert_eq!(ready_again["peer_id"], ready["peer_id"]);
    again.kill();
    Ok(())
}

/// packaging/build-deb.sh builds a package that dpkg installs into an empty root, with the
/// binary, the systemd unit, the manual pages and the completions where they belong.
#[test]
fn the_debian_package_installs_into_an_empty_root() -> Result<()> {
    if which("dpkg-deb").is_none() {
        anyhow::bail!("dpkg-deb not found: this test needs a Debian or Ubuntu machine");
    }
    let dir = tempfile::tempdir()?;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/build-deb.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args(["--fast", "--binary"])
        .arg(ruang_bin())
        .arg("--out")
        .arg(dir.path())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "build-deb.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8(out.stdout)?.trim().to_string();
    let info = std::process::Command::new("dpkg-deb")
        .args(["--field", &deb])
        .output()?;
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: ruang"), "{info}");
    assert!(
        info.contains("Depends:") && info.contains("libasound2"),
        "{info}"
    );

    // An empty root with dpkg's database, and the package installed into it.
    let root = dir.path().join("root");
    let admin = root.join("var/lib/dpkg");
    for sub in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(sub))?;
    }
    std::fs::write(admin.join("status"), "")?;
    let install = std::process::Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--log=/dev/null", "-i", &deb])
        .output()?;
    anyhow::ensure!(
        install.status.success(),
        "dpkg -i failed: {}{}",
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
    for file in [
        "usr/bin/ruang",
        "usr/lib/systemd/system/ruang-node.service",
        "usr/share/man/man1/ruang.1.gz",
        "usr/share/man/man1/ruang-node.1.gz",
        "usr/share/bash-completion/completions/ruang",
        "usr/share/zsh/vendor-completions/_ruang",
        "usr/share/fish/vendor_completions.d/ruang.fish",
        "usr/share/doc/ruang/config.sample.toml",
        "usr/share/doc/ruang/copyright",
    ] {
        assert!(root.join(file).is_file(), "{file} not installed");
    }
    // The installed binary runs, and the unit starts it the way the binary understands.
    let version = std::process::Command::new(root.join("usr/bin/ruang"))
        .arg("--version")
        .output()?;
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("ruang "));
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/ruang-node.service"))?;
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/bin/ruang "))
        .context("ExecStart")?
        .replace("${STATE_DIRECTORY}", "/var/lib/ruang-node");
    let mut args: Vec<&str> = exec.split_whitespace().collect();
    args.push("--help");
    let parsed = std::process::Command::new(root.join("usr/bin/ruang"))
        .args(&args)
        .output()?;
    assert!(
        parsed.status.success(),
        "the unit's command line does not parse: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}
