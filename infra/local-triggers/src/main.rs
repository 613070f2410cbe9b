//! `local-triggers`: Lambda's event sources for a SAM template, run locally. `--help` on every
//! command says what it does; exit status 0 is success, 1 a failure the output explains, 2 a
//! command line that needs correcting.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use local_triggers::http_api::{self, HttpGateway};
use local_triggers::invoke::Invoker;
use local_triggers::scheduler::{self, Account, Backoff, Fired};
use local_triggers::template::Sources;
use local_triggers::websocket::{self, Gateway};
use local_triggers::{msk, sqs};

/// Lambda's event sources (SQS, MSK, EventBridge Scheduler) for a SAM template, and a WebSocket
/// API, run locally against `cargo lambda watch`.
#[derive(Parser)]
#[command(name = "local-triggers", version)]
struct Cli {
    /// The template in JSON (this project's `make up` writes it from template.yaml).
    #[arg(long, global = true, default_value = ".stack/template.local.json")]
    template: PathBuf,
    /// The stack's resources: a JSON object from logical id to physical id (queue URL, ARN).
    #[arg(long, global = true, default_value = ".stack/resources.json")]
    resources: PathBuf,
    /// Where `cargo lambda watch` takes invocations.
    #[arg(
        long,
        global = true,
        env = "LAMBDA_INVOKE_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    invoke_url: String,
    /// The Kafka brokers the MSK sources read.
    #[arg(
        long,
        global = true,
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
    /// The account id written into ARNs (moto's default).
    #[arg(long, global = true, default_value = "123456789012")]
    account_id: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every SQS, MSK and schedule source of every function, one line per delivery.
    Sources {
        /// Only this function's sources (the last segment of its CodeUri).
        #[arg(long, value_name = "FUNCTION")]
        only: Option<String>,
        /// Stop once the queues and topics have been quiet this many seconds (without: run
        /// until stopped). Schedules stop with them.
        #[arg(long, value_name = "SECS", value_parser = seconds)]
        idle: Option<Duration>,
        /// Seconds before each asynchronous retry of a failed scheduled run (Lambda: 60, then
        /// 120).
        #[arg(long, value_name = "SECS", value_parser = seconds)]
        retry_delay: Option<Duration>,
    },
    /// Scheduler's side alone.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// The template's HTTP APIs: each HttpApi event served at http://LISTEN/<stage><path>,
    /// behind its API's JWT authorizer (tokens verified with the JWKS file), the function
    /// invoked with API Gateway's payload-2.0 event.
    Http {
        #[arg(long, default_value = "127.0.0.1:9300")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = ".stack/jwt/jwks.json")]
        jwks: PathBuf,
    },
    /// An API Gateway WebSocket API in front of FUNCTION: clients connect to ws://LISTEN/?token=…
    /// (the function authorizes $connect and handles $connect/$disconnect); POST
    /// /@connections/{id} posts to a live connection, 410 GoneException for the rest.
    Websocket {
        #[arg(long, default_value = "127.0.0.1:9301")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "alert-connections")]
        function: String,
    },
    /// A WebSocket client: connect to URL and print every text frame received for SECS seconds.
    Listen {
        url: String,
        #[arg(long = "for", value_name = "SECS", value_parser = seconds, default_value = "10")]
        duration: Duration,
    },
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Each schedule with its next firing.
    List,
    /// Fire a function's schedule once, as if at the given time, with the template's retries.
    Fire {
        /// The function (the last segment of its CodeUri).
        function: String,
        /// The instant it fires at, RFC 3339 (e.g. 2026-11-21T02:00:00+09:00).
        #[arg(long)]
        at: DateTime<Utc>,
        /// The schedule event's name, when the function has more than one.
        #[arg(long)]
        event: Option<String>,
        /// Seconds before each asynchronous retry of a failed run (Lambda: 60, then 120).
        #[arg(long, value_name = "SECS", value_parser = seconds)]
        retry_delay: Option<Duration>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("local-triggers: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A number of seconds, 0 or more (fractions allowed).
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text} is not 0 or more seconds"))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Websocket { listen, function } => {
            let gateway = Gateway::new(Invoker::new(&cli.invoke_url)?, function);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listen on {listen}"))?;
            println!("websocket: ws://{listen}/?token=... in front of {function}");
            axum::serve(listener, gateway.router()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Http { listen, jwks } => {
            let template: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&cli.template)
                    .with_context(|| format!("read {}", cli.template.display()))?,
            )?;
            let routes = http_api::routes(&template)?;
            let jwks = std::fs::read_to_string(jwks)
                .with_context(|| format!("read {}", jwks.display()))?;
            for route in &routes {
                println!(
                    "http: {} http://{listen}/{}{} -> {}{}",
                    route.method,
                    route.stage,
                    route.path,
                    route.function,
                    if route.jwt.is_some() { " (JWT)" } else { "" }
                );
            }
            let gateway = HttpGateway::new(routes, &jwks, Invoker::new(&cli.invoke_url)?)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listen on {listen}"))?;
            axum::serve(listener, gateway.router()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Listen { url, duration } => {
            let received = websocket::listen(url, *duration).await?;
            eprintln!("listen: {received} frames");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let sources = Sources::read(&cli.template, &cli.resources)?;
    let invoker = Invoker::new(&cli.invoke_url)?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs_client = aws_sdk_sqs::Client::new(&sdk);
    let account = Account {
        region: sdk
            .region()
            .map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
        account_id: cli.account_id.clone(),
    };
    let backoff = |retry_delay: Option<Duration>| match retry_delay {
        Some(delay) => Backoff {
            run_retries: vec![delay],
            delivery_retry: delay,
        },
        None => Backoff::default(),
    };
    match cli.command {
        Command::Sources {
            only,
            idle,
            retry_delay,
        } => {
            let sources = match &only {
                Some(function) => sources.only(function),
                None => sources,
            };
            anyhow::ensure!(
                !sources.is_empty(),
                "no SQS, MSK or ScheduleV2 event in {} matches{}",
                cli.template.display(),
                only.map(|f| format!(" --only {f}")).unwrap_or_default()
            );
            let backoff = backoff(retry_delay);
            let label = |function: &str, event: &str| format!("{function} {event}");
            let queues = sources.sqs.iter().map(|s| async {
                let tally = sqs::run(s, &sqs_client, &invoker, idle).await?;
                Ok::<_, anyhow::Error>((label(&s.function, &s.event), tally))
            });
            let topics = sources.msk.iter().map(|s| async {
                let tally = msk::run(s, &cli.brokers, &invoker, &sqs_client, idle).await?;
                Ok::<_, anyhow::Error>((label(&s.function, &s.event), tally))
            });
            let schedules = sources.schedules.iter().map(|s| async {
                let tally = scheduler::run(s, &invoker, &sqs_client, &account, &backoff).await?;
                Ok::<_, anyhow::Error>((label(&s.function, &s.event), tally))
            });
            let streams = async {
                let (queues, topics) = futures::future::try_join(
                    futures::future::try_join_all(queues),
                    futures::future::try_join_all(topics),
                )
                .await?;
                Ok::<_, anyhow::Error>(queues.into_iter().chain(topics).collect::<Vec<_>>())
            };
            let tallies = if sources.sqs.is_empty() && sources.msk.is_empty() && idle.is_some() {
                // Schedules alone with --idle: nothing to be quiet; stop after the idle time.
                let quiet = idle.unwrap_or_default();
                tokio::select! {
                    done = futures::future::try_join_all(schedules) => done?,
                    () = tokio::time::sleep(quiet) => Vec::new(),
                }
            } else if idle.is_some() {
                // Schedules stop with the queues and topics; one that has no more firings
                // waits with them rather than ending the run.
                let schedules = async {
                    futures::future::try_join_all(schedules).await?;
                    std::future::pending::<anyhow::Result<Vec<_>>>().await
                };
                tokio::select! {
                    done = streams => done?,
                    failed = schedules => failed?,
                }
            } else {
                let (streams, schedules) =
                    futures::future::try_join(streams, futures::future::try_join_all(schedules))
                        .await?;
                streams.into_iter().chain(schedules).collect()
            };
            for (source, tally) in &tallies {
                println!(
                    "{source}: {} records in {} deliveries, {} failed invocations",
                    tally.records, tally.deliveries, tally.failed_invocations
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule(ScheduleCommand::List) => {
            let now = Utc::now();
            for s in &sources.schedules {
                let next = s
                    .schedule
                    .next_after(now, now)
                    .map_or_else(|| "never".to_owned(), |at| at.to_rfc3339());
                println!(
                    "{} {}: {} ({}) next {next}",
                    s.function, s.event, s.schedule.expression, s.schedule.zone
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Http { .. } | Command::Websocket { .. } | Command::Listen { .. } => {
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule(ScheduleCommand::Fire {
            function,
            at,
            event,
            retry_delay,
        }) => {
            let source = sources
                .schedules
                .iter()
                .find(|s| s.function == function && event.as_ref().is_none_or(|e| *e == s.event))
                .with_context(|| {
                    format!("{function} has no ScheduleV2 event{} in the template (see `schedule list`)",
                        event.as_ref().map(|e| format!(" named {e}")).unwrap_or_default())
                })?;
            let (fired, _) = scheduler::fire(
                source,
                at,
                &invoker,
                &sqs_client,
                &account,
                &backoff(retry_delay),
            )
            .await?;
            Ok(match fired {
                Fired::Ran { attempt, returned } => {
                    println!("{function}: ran at attempt {attempt}: {returned}");
                    ExitCode::SUCCESS
                }
                Fired::Failed {
                    attempts,
                    error,
                    parked,
                } => {
                    println!(
                        "{function}: failed {attempts} times{}: {error}",
                        if parked {
                            "; invocation record sent to the on-failure destination"
                        } else {
                            ""
                        }
                    );
                    ExitCode::FAILURE
                }
                Fired::Undelivered { error, parked } => {
                    println!(
                        "{function}: not delivered{}: {error}",
                        if parked {
                            "; event sent to the schedule's dead-letter queue"
                        } else {
                            ""
                        }
                    );
                    ExitCode::FAILURE
                }
            })
        }
    }
}
