//! `--mode distributed`: the CPU of the PostgreSQL and RabbitMQ servers on
//! this machine (issue 19, point 3), so the cost of a check counts the whole
//! system and not only healthmon's processes.
//!
//! Every process of either server is found in /proc by its command name:
//! PostgreSQL's postmaster and every backend and helper (`postgres`),
//! RabbitMQ's Erlang VM and its helpers (`beam.smp`, `erl_child_setup`,
//! `epmd`, `inet_gethost`, `heart`, and the `sh -s rabbit_disk_monitor` it
//! runs). A sample adds up each one's user + system ticks *and* those of its
//! reaped children (`cutime` + `cstime`): a backend that exits between two
//! samples moves its time into the postmaster's children's time, so the sum
//! only grows and the difference of two samples is what the servers used in
//! between, backends that came and went included.
//!
//! Both servers are shared: anything else using them during the window
//! (another test run, a build's tests) is counted too.

/// CPU seconds used so far by each server's processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerCpu {
    /// Every `postgres` process.
    pub postgres: f64,
    /// Every RabbitMQ (Erlang) process.
    pub rabbitmq: f64,
    /// How many processes were summed, per server.
    pub postgres_procs: usize,
    pub rabbitmq_procs: usize,
}

enum Server {
    Postgres,
    RabbitMq,
}

fn server_of(pid: &str) -> Option<Server> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    match comm.trim() {
        "postgres" | "postmaster" => Some(Server::Postgres),
        "beam.smp" | "beam" | "erl_child_setup" | "epmd" | "inet_gethost" | "heart" => {
            Some(Server::RabbitMq)
        }
        "sh" => {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains("rabbit_disk_monitor")
                .then_some(Server::RabbitMq)
        }
        _ => None,
    }
}

/// utime + stime + cutime + cstime of a process, in seconds.
fn ticks_with_children(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ":
    // state is field 3, so utime (14) .. cstime (17) are 11..=14 here.
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let ticks: f64 = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    // USER_HZ is 100 on Linux (as tests/common/measure.rs assumes).
    ticks / 100.0
}

/// Samples every server process now.
pub fn sample() -> ServerCpu {
    let mut cpu = ServerCpu::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        match server_of(pid) {
            Some(Server::Postgres) => {
                cpu.postgres += ticks_with_children(pid);
                cpu.postgres_procs += 1;
            }
            Some(Server::RabbitMq) => {
                cpu.rabbitmq += ticks_with_children(pid);
                cpu.rabbitmq_procs += 1;
            }
            None => {}
        }
    }
    cpu
}
