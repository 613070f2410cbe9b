//! Staged outages: a TCP proxy that can be cut, and a redis-server of a test's own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::unique;

/// A TCP proxy in front of a server (PostgreSQL, say) that a test can cut: cutting drops every
/// open connection and refuses new ones until it is restored, as an outage would.
pub struct TcpProxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    pipes: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> anyhow::Result<Self> {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let pipes: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, pipes) = (up.clone(), pipes.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection closed
                    }
                    let pipe = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    if let Ok(mut pipes) = pipes.lock() {
                        pipes.push(pipe.abort_handle());
                    }
                }
            }
        });
        Ok(Self {
            port,
            up,
            pipes,
            accept,
        })
    }

    /// A pool to `db` through this proxy (to PostgreSQL), quick to give up while it is cut.
    pub fn pool_for(&self, db: &crate::TestDb) -> sqlx::PgPool {
        let mut config = crate::db_config();
        config.acquire_timeout = Duration::from_millis(500);
        adapters::db::pool_with(&config, db.options.clone().port(self.port))
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut pipes) = self.pipes.lock() {
            for pipe in pipes.drain(..) {
                pipe.abort();
            }
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A redis-server of one test's own, on a free port, that the test can stop and start again
/// (its data is saved on stop and loaded on start) without touching the shared Redis.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(unique("redis-"));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.start_again().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await?)
    }

    /// Starts the stopped server on the same port, with the data it had.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("start redis-server (is it installed? make up)")?;
        self.child = Some(child);
        for _ in 0..100 {
            if let Ok(mut conn) = self.connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("redis-server on port {} did not start", self.port)
    }

    /// Saves and stops the server: clients get connection errors until it starts again.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let mut conn = self.connection().await?;
        // The server closes the connection as it exits, so the reply is an error.
        let _ = redis::cmd("SHUTDOWN")
            .arg("SAVE")
            .query_async::<()>(&mut conn)
            .await;
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
