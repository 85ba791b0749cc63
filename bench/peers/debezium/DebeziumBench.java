// Streaming peer: Debezium's embedded engine (io.debezium.engine.DebeziumEngine, PostgreSQL
// connector, pgoutput) consuming the changes change_writer.py makes, as a Debezium user embedding
// it in a JVM service would (issue 16: Weir must be at least 3x its rate).
//
// What it measures: how fast the engine hands change events to its consumer, and when each
// writer transaction has fully arrived (for the lag from source commit). The consumer does no
// work beyond counting, reading the `marker` column and noting the time: this is Debezium's
// best case (Kafka Connect SourceRecords, nothing serialized). --format json makes the engine
// serialize every event to JSON (JsonConverter, schemas off) and the consumer parse it back with
// Jackson, closer to what a Debezium -> Kafka pipeline pays.
//
// Run it through run.sh (downloads the jars once, compiles, picks the classpath):
//   bench/peers/debezium/run.sh --url postgres://postgres@127.0.0.1:5432/weir_peer_cdc \
//       --table public.bench_cdc --slot weir_peer_dbz --publication weir_peer_pub --expect 1000000 \
//       [--arrivals /tmp/dbz_arrivals.csv] [--format connect|json] [--timeout 600] [key=value ...]
// Extra key=value arguments are passed to the connector/engine as they are (e.g.
// max.batch.size=8192 poll.interval.ms=100); the defaults below are Debezium's own except where
// noted.
//
// The publication must exist (publication.autocreate.mode=disabled); the slot is used if it
// exists (streaming starts at its confirmed_flush_lsn: changes made since its creation are
// delivered, i.e. backlog mode works) and created by Debezium if not. snapshot.mode=no_data
// (3.x's name for the old `never`, which 3.6 rejects): stream only, no initial copy. Offsets live
// in memory: each run starts from the slot. The slot is never dropped here.
//
// Prints, once --expect change events (insert/update/delete; no tombstones) have arrived:
//   debezium changes=N inserts=… updates=… deletes=… seconds=S changes_per_s=R wall_s=W startup_s=U
// seconds/changes_per_s: first event -> Nth event; wall_s: JVM start -> Nth event; startup_s: JVM
// start -> first event. With --arrivals FILE it writes `marker,seen_us` (epoch µs at which the
// last event carrying each marker had been handed to the consumer); lag_stats.py turns that and
// the writer's log into p50/p99.
import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.RecordChangeEvent;
import io.debezium.engine.format.ChangeEventFormat;
import io.debezium.engine.format.Json;

import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.source.SourceRecord;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

public class DebeziumBench {
    static long expect;
    static long count, inserts, updates, deletes;
    static long firstUs, lastUs;
    static final Map<Long, Long> seen = new HashMap<>();
    static final CountDownLatch done = new CountDownLatch(1);
    static final ObjectMapper json = new ObjectMapper();

    static long nowUs() {
        Instant i = Instant.now();
        return i.getEpochSecond() * 1_000_000L + i.getNano() / 1000;
    }

    // One event: op is 'c', 'u', 'd' (or 'r' for a snapshot read, which no_data never sends).
    static synchronized void onEvent(char op, Long marker, long t) {
        if (count >= expect) return;
        if (count == 0) firstUs = t;
        count++;
        switch (op) {
            case 'c': case 'r': inserts++; break;
            case 'u': updates++; break;
            case 'd': deletes++; break;
            default: break;
        }
        if (marker != null) seen.put(marker, t);
        if (count == expect) {
            lastUs = t;
            done.countDown();
        }
    }

    static void onConnect(SourceRecord r, long t) {
        if (!(r.value() instanceof Struct)) return; // tombstone or heartbeat
        Struct v = (Struct) r.value();
        Field opField = v.schema().field("op");
        if (opField == null) return; // schema-change or transaction metadata record
        String op = v.getString("op");
        Long marker = null;
        Struct after = v.schema().field("after") != null ? v.getStruct("after") : null;
        if (after != null && after.schema().field("marker") != null) marker = after.getInt64("marker");
        onEvent(op.charAt(0), marker, t);
    }

    static void onJson(String value, long t) throws Exception {
        if (value == null) return;
        JsonNode v = json.readTree(value);
        JsonNode op = v.get("op");
        if (op == null) return;
        JsonNode after = v.get("after");
        Long marker = (after != null && after.has("marker")) ? after.get("marker").asLong() : null;
        onEvent(op.asText().charAt(0), marker, t);
    }

    static void usage() {
        System.err.println("usage: DebeziumBench --url postgres://user[:pw]@host:port/db --table schema.table "
                + "--slot SLOT --publication PUB --expect N [--arrivals FILE] [--format connect|json] "
                + "[--timeout SECONDS] [key=value ...]");
        System.exit(2);
    }

    public static void main(String[] args) throws Exception {
        String url = null, table = null, slot = null, pub = null, arrivals = null, format = "connect";
        long timeout = 600;
        Map<String, String> extra = new TreeMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--url": url = args[++i]; break;
                case "--table": table = args[++i]; break;
                case "--slot": slot = args[++i]; break;
                case "--publication": pub = args[++i]; break;
                case "--expect": expect = Long.parseLong(args[++i]); break;
                case "--arrivals": arrivals = args[++i]; break;
                case "--format": format = args[++i]; break;
                case "--timeout": timeout = Long.parseLong(args[++i]); break;
                default:
                    int eq = a.indexOf('=');
                    if (a.startsWith("--") || eq < 0) usage();
                    extra.put(a.substring(0, eq), a.substring(eq + 1));
            }
        }
        if (url == null || table == null || slot == null || pub == null || expect <= 0) usage();
        if (!format.equals("connect") && !format.equals("json")) usage();

        URI u = new URI(url);
        String user = "postgres", password = "";
        if (u.getRawUserInfo() != null) {
            String[] up = u.getRawUserInfo().split(":", 2);
            user = URLDecoder.decode(up[0], StandardCharsets.UTF_8);
            if (up.length > 1) password = URLDecoder.decode(up[1], StandardCharsets.UTF_8);
        }
        Properties p = new Properties();
        p.setProperty("name", "weir-bench-debezium");
        p.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        p.setProperty("offset.storage", "org.apache.kafka.connect.storage.MemoryOffsetBackingStore");
        p.setProperty("offset.flush.interval.ms", "1000"); // confirms LSNs to the slot every second (default 60 s)
        p.setProperty("database.hostname", u.getHost());
        p.setProperty("database.port", String.valueOf(u.getPort() > 0 ? u.getPort() : 5432));
        p.setProperty("database.user", user);
        p.setProperty("database.password", password);
        p.setProperty("database.dbname", u.getPath().replaceFirst("^/", ""));
        p.setProperty("topic.prefix", "weir");
        p.setProperty("plugin.name", "pgoutput");
        p.setProperty("slot.name", slot);
        p.setProperty("publication.name", pub);
        p.setProperty("publication.autocreate.mode", "disabled");
        p.setProperty("table.include.list", table);
        p.setProperty("snapshot.mode", "no_data");
        p.setProperty("tombstones.on.delete", "false");
        if (format.equals("json")) {
            p.setProperty("converter.schemas.enable", "false");
        }
        extra.forEach(p::setProperty);

        // A daemon thread: if anything below goes wrong, the JVM still exits (a failed engine left
        // a non-daemon executor thread keeping the JVM alive forever).
        ExecutorService pool = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "debezium-engine");
            t.setDaemon(true);
            return t;
        });
        DebeziumEngine<?> engine;
        if (format.equals("connect")) {
            engine = DebeziumEngine.create(ChangeEventFormat.of(io.debezium.embedded.Connect.class))
                    .using(p)
                    .notifying((List<RecordChangeEvent<SourceRecord>> batch,
                                DebeziumEngine.RecordCommitter<RecordChangeEvent<SourceRecord>> committer) -> {
                        long t = nowUs();
                        for (RecordChangeEvent<SourceRecord> e : batch) {
                            onConnect(e.record(), t);
                            committer.markProcessed(e);
                        }
                        committer.markBatchFinished();
                    })
                    .using((success, message, error) -> {
                        if (!success) {
                            System.err.println("debezium: engine stopped: " + message);
                            if (error != null) error.printStackTrace();
                        }
                        done.countDown();
                    })
                    .build();
        } else {
            engine = DebeziumEngine.create(Json.class)
                    .using(p)
                    .notifying((List<ChangeEvent<String, String>> batch,
                                DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer) -> {
                        long t = nowUs();
                        for (ChangeEvent<String, String> e : batch) {
                            try {
                                onJson(e.value(), t);
                            } catch (Exception ex) {
                                throw new RuntimeException(ex);
                            }
                            committer.markProcessed(e);
                        }
                        committer.markBatchFinished();
                    })
                    .using((success, message, error) -> {
                        if (!success) {
                            System.err.println("debezium: engine stopped: " + message);
                            if (error != null) error.printStackTrace();
                        }
                        done.countDown();
                    })
                    .build();
        }
        pool.execute(engine);
        boolean finished = done.await(timeout, TimeUnit.SECONDS);

        long jvmStartUs = ManagementFactory.getRuntimeMXBean().getStartTime() * 1000L;
        synchronized (DebeziumBench.class) {
            if (count < expect) {
                System.err.printf("debezium: %s with %d of %d changes%n", finished ? "engine stopped" : "timeout", count, expect);
                closeQuietly(engine);
                System.exit(1);
            }
            double secs = Math.max(lastUs - firstUs, 1) / 1e6;
            System.out.printf("debezium changes=%d inserts=%d updates=%d deletes=%d seconds=%.2f changes_per_s=%.0f "
                            + "wall_s=%.2f startup_s=%.2f format=%s%n",
                    count, inserts, updates, deletes, secs, count / secs, (lastUs - jvmStartUs) / 1e6,
                    (firstUs - jvmStartUs) / 1e6, format);
            if (arrivals != null) {
                try (PrintWriter w = new PrintWriter(arrivals, StandardCharsets.UTF_8)) {
                    w.println("marker,seen_us");
                    new TreeMap<>(seen).forEach((m, t) -> w.println(m + "," + t));
                }
            }
        }
        System.out.flush();
        closeQuietly(engine);
        pool.shutdown();
        pool.awaitTermination(30, TimeUnit.SECONDS);
        System.exit(0);
    }

    // close() throws IllegalStateException when the engine has already shut itself down.
    static void closeQuietly(DebeziumEngine<?> engine) {
        try {
            engine.close();
        } catch (Exception e) {
            // already stopped
        }
    }
}
