package dev.mephisto.peers;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The Kafka Streams peer of mephisto's benchmark (bench/peers/run): word
 * count, the same app as mephisto's examples/wordcount.
 *
 * <p>lines → flatMapValues(words) → groupBy(word) (repartition topic
 * {@code <app_id>-words-repartition}) → count() into the RocksDB store
 * {@code word_counts} (changelog {@code <app_id>-word_counts-changelog},
 * values 8-byte big-endian longs). A word is a maximal run of characters
 * that are not ASCII whitespace (space, \t, \n, \u000B, \f, \r), counted as
 * written; UTF-8 decoding leaves every other byte inside its word, so the
 * words are those of examples/wordcount.
 *
 * <p>Settings come from the environment, as for every peer: PEER_BROKER
 * (kafka://host:port), PEER_APP_ID, PEER_INPUT, PEER_THREADS (= mephisto
 * workers), PEER_LINGER_MS, PEER_STATE_DIR, PEER_GUARANTEE ({@code
 * at_least_once}, the default, or {@code exactly_once}: Kafka Streams'
 * {@code exactly_once_v2}), PEER_COMMIT_INTERVAL_MS (1000). Stops on
 * SIGTERM.
 */
public final class Peer {
    private static boolean isSpace(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\u000B' || c == '\f' || c == '\r';
    }

    /** The words of one line. */
    static List<String> split(String line) {
        List<String> words = new ArrayList<>(16);
        int n = line.length();
        int i = 0;
        while (i < n) {
            while (i < n && isSpace(line.charAt(i))) {
                i++;
            }
            int start = i;
            while (i < n && !isSpace(line.charAt(i))) {
                i++;
            }
            if (i > start) {
                words.add(line.substring(start, i));
            }
        }
        return words;
    }

    private static String env(String name, String dflt) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            if (dflt == null) {
                throw new IllegalArgumentException(name + " is not set");
            }
            return dflt;
        }
        return v;
    }

    public static void main(String[] args) throws InterruptedException {
        String broker = env("PEER_BROKER", "kafka://127.0.0.1:9092").replaceFirst("^kafka://", "");
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, env("PEER_APP_ID", null));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, broker);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(env("PEER_THREADS", "1")));
        String guarantee = env("PEER_GUARANTEE", "at_least_once");
        switch (guarantee) {
            case "at_least_once":
                props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
                break;
            case "exactly_once":
                // Transactions per stream thread, read_committed consumers.
                props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
                break;
            default:
                throw new IllegalArgumentException(
                        "PEER_GUARANTEE must be at_least_once or exactly_once, not " + guarantee);
        }
        // As mephisto's defaults: commit every second (bench/peers/run passes
        // the same interval to every peer), acks=all, idempotence, linger.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG,
                Integer.parseInt(env("PEER_COMMIT_INTERVAL_MS", "1000")));
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG), true);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG),
                Integer.parseInt(env("PEER_LINGER_MS", "5")));
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        props.put(StreamsConfig.STATE_DIR_CONFIG, env("PEER_STATE_DIR", "/tmp/kstreams-peer"));

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(env("PEER_INPUT", null), Consumed.with(Serdes.ByteArray(), Serdes.String()))
                .flatMapValues(Peer::split)
                .groupBy((key, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("word_counts")
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            done.countDown();
        }));
        streams.start();
        done.await();
    }
}
