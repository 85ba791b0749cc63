//! `weir-es`: the test kit's Elasticsearch test server as a process, for the
//! demo and the benchmark (in memory: its data ends with it).
//!
//! `weir-es --listen 127.0.0.1:9200 [--flavor es8|es7.9|opensearch]`

use clap::{Parser, ValueEnum};
use weir_testkit::es::{EsConfig, EsServer, Flavor};

#[derive(Parser)]
#[command(about = "Serve the Elasticsearch test server until stopped")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9200")]
    listen: String,
    #[arg(long, value_enum, default_value_t = Which::Es8)]
    flavor: Which,
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Es8,
    #[value(name = "es7.9")]
    Es79,
    Opensearch,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let flavor = match cli.flavor {
        Which::Es8 => Flavor::elasticsearch_8(),
        Which::Es79 => Flavor::elasticsearch_7_9(),
        Which::Opensearch => Flavor::OpenSearch,
    };
    tokio::runtime::Runtime::new()?.block_on(async {
        let server = EsServer::bind(&cli.listen, EsConfig { flavor, ..Default::default() }).await?;
        eprintln!("weir-es: serving on {}", server.url());
        tokio::select! {
            _ = server.serve_forever() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}
