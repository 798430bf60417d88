//! What can be checked of the Docker files without Docker (no engine and no image registry
//! here; the image build itself is not exercised by CI): the artifacts the Dockerfile copies
//! are what the workspace builds, both stages are one Debian release, the command loads the
//! module from where it was copied, the image's redis.conf works with the module, and the
//! fetcher accepts what docker-compose.yml gives it, health check included.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `FROM image [AS name]` lines: (image, stage name).
fn stages(dockerfile: &str) -> Vec<(String, Option<String>)> {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|rest| {
            let w: Vec<&str> = rest.split_whitespace().collect();
            (w[0].to_string(), (w.len() == 3 && w[1].eq_ignore_ascii_case("as")).then(|| w[2].to_string()))
        })
        .collect()
}

/// `COPY [--from=stage] src dst` lines: (from, src, dst).
fn copies(dockerfile: &str) -> Vec<(Option<String>, String, String)> {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .map(|rest| {
            let mut w: Vec<&str> = rest.split_whitespace().collect();
            let from = w.first().and_then(|f| f.strip_prefix("--from=")).map(str::to_string);
            if from.is_some() {
                w.remove(0);
            }
            (from, w[0].to_string(), w[1].to_string())
        })
        .collect()
}

/// The CMD's JSON array.
fn cmd_words(dockerfile: &str) -> Vec<String> {
    let line = dockerfile.lines().find_map(|l| l.strip_prefix("CMD ")).expect("a CMD");
    serde_json::from_str(line).expect("CMD in exec form")
}

#[test]
fn dockerfile_copies_what_the_workspace_builds_on_one_debian_release() {
    let df = read("Dockerfile");
    let st = stages(&df);
    assert_eq!(st.len(), 2, "a build stage and a runtime stage: {st:?}");
    let (builder, name) = &st[0];
    let runtime = &st[1].0;
    assert!(builder.starts_with("rust:"), "{builder}");
    assert!(runtime.starts_with("redis:"), "the official Redis image family: {runtime}");
    let release = |image: &str| image.rsplit('-').next().unwrap_or("").to_string();
    assert_eq!(release(builder), release(runtime), "same Debian release in both stages (the module's glibc)");
    assert_eq!(release(runtime), "bookworm");

    // What cargo builds: the module's cdylib (lib name in Cargo.toml) and the fetcher's bin.
    let lib = read("Cargo.toml");
    assert!(lib.contains("name = \"aijob\"") && lib.contains("crate-type = [\"cdylib\"]"));
    let bin = read("fetcher/Cargo.toml");
    assert!(bin.contains("name = \"aijob-fetcher\""));
    assert!(df.contains("cargo build --release --locked --workspace"));
    let built = copies(&df);
    let from_build: Vec<&(Option<String>, String, String)> = built.iter().filter(|c| c.0 == *name).collect();
    let srcs: Vec<&str> = from_build.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(srcs, ["/src/target/release/libaijob.so", "/src/target/release/aijob-fetcher"]);
    // The same file names come out of any profile: check them in whichever was built.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built_in =
        |p: &str| srcs.iter().all(|s| root.join("target").join(p).join(Path::new(s).file_name().unwrap()).exists());
    let profile = ["release", "debug"].into_iter().find(|p| built_in(p));
    let profile = profile.expect("a build of the module (cargo build)");
    for src in srcs {
        let file = Path::new(src).file_name().unwrap();
        let path = root.join("target").join(profile).join(file);
        assert!(path.exists(), "{} is what `cargo build` makes", path.display());
    }
    assert!(Path::new(&from_build[0].2) == Path::new("/usr/local/lib/aijob/libaijob.so"));

    // The CMD loads the module from where COPY put it, with the config COPY put in place.
    let words = cmd_words(&df);
    let conf_dst = &built.iter().find(|c| c.1 == "docker/redis.conf").expect("the image's redis.conf").2;
    assert_eq!(words, ["redis-server", conf_dst, "--loadmodule", &from_build[0].2]);
    assert!(root.join("docker/redis.conf").exists());
    for ignored in ["target/", ".git/"] {
        assert!(
            read(".dockerignore").lines().any(|l| l == ignored),
            ".dockerignore keeps {ignored} out of the context"
        );
    }
}

#[test]
fn the_images_redis_conf_runs_with_the_module() {
    // The image's config with its container path (/data, which Redis enters while it reads
    // the file) moved to a scratch directory; the port and the bind address given after it.
    let tmp = TempDir::new("dockerconf");
    let conf = read("docker/redis.conf");
    assert!(!conf.lines().any(|l| l.starts_with("loadmodule")), "the CMD loads the module, the config does not");
    assert!(conf.lines().any(|l| l == "dir /data"), "the data lives in the volume at /data");
    let here = conf.replace("dir /data", &format!("dir {}", tmp.0.display()));
    let conf_path = tmp.0.join("redis.conf");
    std::fs::write(&conf_path, here).expect("write the config");
    let port = free_port();
    let mut child = Command::new(server_binary())
        .arg(&conf_path)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--loadmodule")
        .arg(module_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server with docker/redis.conf");
    let url = format!("redis://127.0.0.1:{port}/");
    let mut c = wait_until(Duration::from_secs(10), "the server with docker/redis.conf", || {
        redis::Client::open(url.as_str()).ok()?.get_connection().ok()
    });
    let settings = |c: &mut Connection, name: &str| s(&array(&ok(c, &["CONFIG", "GET", name]))[1]);
    assert_eq!(settings(&mut c, "appendonly"), "yes");
    assert_eq!(settings(&mut c, "appendfsync"), "everysec");
    assert_eq!(settings(&mut c, "maxmemory-policy"), "noeviction");
    assert_eq!(settings(&mut c, "protected-mode"), "no");
    let id = s(&ok(&mut c, &["JOB.CREATE", "default", "PAYLOAD", "{}"]));
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "default", &id]), "status"), "queued");
    let _ = child.kill();
    let _ = child.wait();
}

/// The fetcher takes docker-compose.yml's environment, and the compose health check (run
/// here with bash, as in the container) passes against its /healthz.
#[test]
fn compose_services_match_the_fetcher_and_the_health_checks_work() {
    let compose = read("docker-compose.yml");
    for want in [
        "test: [\"CMD\", \"redis-cli\", \"ping\"]",
        "aijob-data:/data",
        "REDIS_URL: redis://redis:6379",
        "command: [\"aijob-fetcher\"]",
        "condition: service_healthy",
    ] {
        assert!(compose.contains(want), "docker-compose.yml has {want}");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fetcher = std::env::var_os("AIJOB_FETCHER")
        .map(std::path::PathBuf::from)
        .unwrap_or(root.join("target/debug/aijob-fetcher"));
    let help = Command::new(&fetcher).arg("--help").output().expect("the fetcher is built (cargo build --workspace)");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for env in ["REDIS_URL", "AIJOB_QUEUES", "AIJOB_LISTEN", "GEMINI_API_KEY", "OPENAI_API_KEY"] {
        assert!(help.contains(&format!("env: {env}")), "the fetcher reads {env}:\n{help}");
        assert!(compose.contains(&format!("{env}:")), "docker-compose.yml sets {env}");
    }

    let srv = Server::start();
    let listen = free_port();
    let mut child = Command::new(&fetcher)
        .env("REDIS_URL", srv.url())
        .env("AIJOB_QUEUES", "default")
        .env("AIJOB_LISTEN", format!("127.0.0.1:{listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the fetcher");
    // The compose file's check, with the port it is given here.
    let check = compose.lines().find(|l| l.contains("/dev/tcp/127.0.0.1/9464")).expect("the fetcher's health check");
    let words: Vec<String> = serde_json::from_str(check.trim().trim_start_matches("test:").trim()).expect("exec form");
    assert_eq!(&words[..3], ["CMD", "bash", "-c"]);
    let script = words[3].replace("9464", &listen.to_string());
    wait_until(Duration::from_secs(20), "the fetcher's /healthz to pass the compose health check", || {
        Command::new("bash").arg("-c").arg(&script).stderr(Stdio::null()).status().ok()?.success().then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
}
