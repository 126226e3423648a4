package dev.mephisto.peers;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams peer of mephisto's benchmark (bench/peers/run).
 *
 * <p>Reads the bench's input topic, decodes the JSON field "user" of each
 * record (the same work as mephisto's passthrough agent, with Jackson's
 * streaming parser) and forwards key and value to the output topic.
 * Settings come from the environment, as for every peer: PEER_BROKER
 * (kafka://host:port), PEER_APP_ID, PEER_INPUT, PEER_OUTPUT, PEER_THREADS
 * (= mephisto workers), PEER_LINGER_MS. The per-record work is process();
 * a word count replaces the topology's middle with flatMapValues → groupBy →
 * count once every peer runs one. Stops on SIGTERM.
 */
public final class Peer {
    private static final JsonFactory JSON = new JsonFactory();

    /** The per-record work: decode one JSON field. */
    static String process(byte[] value) {
        try (JsonParser p = JSON.createParser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new IllegalArgumentException("not a JSON object");
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                p.nextToken();
                if ("user".equals(name)) {
                    return p.getText();
                }
                p.skipChildren();
            }
            throw new IllegalArgumentException("no field user");
        } catch (IOException e) {
            throw new IllegalArgumentException(e);
        }
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
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        // As mephisto's defaults: commit every second, acks=all, idempotence, linger.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG), true);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG),
                Integer.parseInt(env("PEER_LINGER_MS", "5")));
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        props.put(StreamsConfig.STATE_DIR_CONFIG, env("PEER_STATE_DIR", "/tmp/kstreams-peer"));

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(env("PEER_INPUT", null), Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .peek((k, v) -> process(v))
                .to(env("PEER_OUTPUT", null), Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

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
