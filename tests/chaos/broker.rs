//! A Mosquitto of the suite's own, on a free port, with persistence, that a scenario can stop
//! and start again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One Mosquitto process and the directory holding its config, log and persistence file.
pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts a fresh broker (empty persistence in `dir`, with its config and log) and
    /// waits until it accepts connections.
    pub async fn start(dir: &Path) -> Mosquitto {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.to_path_buf();
        // A port that was free a moment ago: Mosquitto is told it, rather than asked.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let persistence = format!("{}/", dir.display());
        let config = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             # Started as root, Mosquitto would switch to the `mosquitto` user, which cannot\n\
             # write the suite's directory: no log, no persistence file, sessions lost on a\n\
             # restart. Ignored when not started as root.\n\
             user root\n\
             persistence true\n\
             persistence_location {persistence}\n\
             # Messages queued for an offline persistent session (a killed service, a replica's\n\
             # share, the suite's subscriber) must not be dropped: the default cap of 1000 per\n\
             # client would silently lose what the suite counts. 0 = no cap.\n\
             max_queued_messages 0\n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n",
            log = dir.join("mosquitto.log").display()
        );
        std::fs::write(dir.join("mosquitto.conf"), config).unwrap();
        let mut broker = Mosquitto {
            port,
            dir,
            child: None,
        };
        broker.start_again().await;
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("mosquitto.log")
    }

    /// Starts the process on the same port, config and persistence file.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("mosquitto starts (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(self.addr()).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}; see {}",
                self.port,
                self.log().display()
            );
            // Polling a starting process's port.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and wait: Mosquitto saves its persistence file (sessions, queued messages)
    /// on a graceful stop.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mosquitto did not stop within 15 s after SIGTERM");
            }
            // Polling a stopping process.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
