import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// How events leave: the webhooks' batch, timeout and give-up, and how long the outbox keeps events.
public struct EventSettings: Sendable {
    /// Most events in one delivery (`--webhook-batch`).
    public var webhookBatch: Int
    /// A delivery not answered 2xx within this is retried (`--webhook-timeout`).
    public var webhookTimeout: Duration
    /// An endpoint failing this long is given up (`--webhook-give-up`): its events stay in the feed.
    public var webhookGiveUp: Duration
    /// Events every live endpoint acknowledged are deleted once this old (`--events-retention`).
    public var retention: Duration
    /// A dead instance's endpoints are taken over once its lease runs out: renewed every quarter of
    /// it, so another instance delivers within a lease and a quarter (5 s).
    public var lease: Duration

    public init(
        webhookBatch: Int = 100, webhookTimeout: Duration = .seconds(10), webhookGiveUp: Duration = .seconds(72 * 3600),
        retention: Duration = .seconds(7 * 24 * 3600), lease: Duration = .seconds(4)
    ) {
        self.webhookBatch = webhookBatch
        self.webhookTimeout = webhookTimeout
        self.webhookGiveUp = webhookGiveUp
        self.retention = retention
        self.lease = lease
    }
}

/// The outbox's events (migrations/0012_outbox.sql), read in feed order, and deleted once delivered
/// and old.
struct Outbox: Sendable {
    let database: Database

    /// Events after `cursor` and up to the row at `through` (the feed's settled position), in feed
    /// order, at most `limit`; only of `types` when given.
    ///
    /// Reads rows a few at a time, a group's row whole, and expands them (`CouponEvent.events(of:after:)`):
    /// first 2 rows (a closed-loop sale's groups hold 75 events, a batch 100), then as many as the
    /// events still wanted need at the events per row read so far. A read of exactly the rows that
    /// hold a batch, by a running count in SQL, cost more than the batch itself.
    func events(after cursor: EventCursor, through: Int64, limit: Int, types: [EventType]? = nil) async throws -> [CouponEvent] {
        let types = types?.map(\.rawValue)
        var events: [CouponEvent] = []
        var (from, rows, rowsRead) = (cursor, 2, 0)
        while events.count < limit, through > from.position || (through == from.position && from.within != nil) {
            let after = from
            // Each row read holds at least one event after `from`.
            let read = try await database.rows(
                """
                SELECT \(unescaped: CouponEvent.columns) FROM outbox
                WHERE position >= \(from.position) AND position <= \(through)
                  AND (position > \(from.position) OR coalesce(cardinality(numbers), 1) > \(from.within))
                  AND (\(types)::text[] IS NULL OR type = ANY (\(types)::text[]))
                ORDER BY position
                LIMIT \(rows)
                """
            ) { try CouponEvent.events(of: $0, after: after) }
            events += read.joined().prefix(limit - events.count)
            rowsRead += read.count
            guard read.count == rows, let last = events.last else { break }
            from = last.cursor
            rows = min(limit, (limit - events.count) / max(1, events.count / rowsRead) + 1)
        }
        return events
    }

    /// Deletes rows at or below `settled` whose every event each endpoint not given up has
    /// acknowledged, and that are older than `retention`, `batch` rows at a time; how many rows.
    func deleteDelivered(olderThan retention: Duration, settled: Int64, batch: Int = 1_000) async throws -> Int {
        var deleted = 0
        while true {
            let rows = try await database.rows(
                """
                WITH doomed AS (
                    SELECT o.position, o.coupon_id FROM outbox AS o
                    WHERE o.position <= least(\(settled), (SELECT min(w.delivered_through - CASE WHEN w.delivered_within IS NULL THEN 0 ELSE 1 END)
                                                    FROM webhooks AS w WHERE w.gave_up_at IS NULL))
                      AND o.occurred_at < now() - make_interval(secs => \(retention.seconds))
                    ORDER BY o.position
                    LIMIT \(batch)
                )
                DELETE FROM outbox AS o USING doomed AS d WHERE o.position = d.position AND o.coupon_id = d.coupon_id
                RETURNING 1
                """
            ) { _ in 1 }
            deleted += rows.count
            if rows.count < batch { return deleted }
        }
    }
}

/// Deletes delivered events past their retention, every `interval`, a batch at a time.
struct OutboxRetention: Service {
    let outbox: Outbox
    let feed: EventFeed
    let settings: EventSettings
    let logger: Logger
    var interval: Duration = .seconds(60)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { break }
                do {
                    let deleted = try await outbox.deleteDelivered(olderThan: settings.retention, settled: try await feed.advance())
                    if deleted > 0 { logger.info("outbox events deleted past their retention", metadata: ["events": "\(deleted)"]) }
                } catch {
                    logger.debug("outbox retention skipped", metadata: ["error": "\(DatabaseFailure.logged(error))"])
                }
            }
        }
    }
}
