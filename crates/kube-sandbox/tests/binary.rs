//! The `kube-sandbox` binary: `--listen 127.0.0.1:0 --kubeconfig FILE` prints
//! `listening on http://HOST:PORT` as its first stdout line, writes a kubeconfig pointing at
//! itself, and serves the API there.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn binary_prints_its_address_and_writes_a_kubeconfig() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-sandbox"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await??
        .unwrap_or_default();
    let url = first
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow::anyhow!("first line was {first:?}"))?;
    let addr = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("not an http URL: {url}"))?;
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let second = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await??
        .unwrap_or_default();
    assert!(second.starts_with("kubeconfig written to"), "{second}");
    let written = std::fs::read_to_string(&kubeconfig)?;
    assert!(written.contains(&format!("server: {url}")), "{written}");
    let version = http_get(addr, "/version").await?;
    assert!(
        version.starts_with("HTTP/1.1 200") && version.contains("\"major\":\"1\""),
        "{version}"
    );
    let missing = http_get(addr, "/api/v1/namespaces/default/secrets/nope").await?;
    assert!(
        missing.starts_with("HTTP/1.1 404") && missing.contains("secrets \\\"nope\\\" not found"),
        "{missing}"
    );
    child.kill().await?;
    Ok(())
}
