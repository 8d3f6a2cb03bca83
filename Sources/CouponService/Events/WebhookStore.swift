import Crypto
import Foundation
import PostgresNIO

/// An endpoint events are delivered to, and where its delivery stands.
struct Webhook: Sendable, Equatable {
    var id: Int64
    var url: String
    /// nil: every type.
    var types: [EventType]?
    var createdAt: Date
    var lastDeliveredAt: Date?
    /// Since when the batch in flight has failed (nil while deliveries succeed).
    var failingSince: Date?
    /// When it was given up, failing past `--webhook-give-up`.
    var gaveUpAt: Date?
    /// Events of its types not yet acknowledged.
    var pending: Int
}

/// An endpoint this instance delivers to until its lease runs out: where to, with which secret, and
/// from which position.
struct WebhookLease: Sendable, Equatable {
    var id: Int64
    var url: String
    var types: [EventType]?
    var secret: String
    /// Where its acknowledged events end.
    var delivered: EventCursor
    var attempts: Int
    /// How long until the next attempt may be sent (after a failure's backoff).
    var retryIn: Duration
}

/// The endpoints (migrations/0012_outbox.sql): registered, listed and removed by an admin; leased,
/// acknowledged and failed by `WebhookDelivery`.
struct WebhookStore: Sendable {
    let database: Database

    /// A new endpoint, delivered the events after `position`, and its secret (shown this once).
    func register(url: String, types: [EventType]?, from position: Int64) async throws -> (Webhook, secret: String) {
        let secret = Self.newSecret()
        let rows = try await database.rows(
            """
            INSERT INTO webhooks (url, types, secret, delivered_through)
            VALUES (\(url), \(types?.map(\.rawValue))::text[], \(secret), \(position))
            RETURNING id, url, types, created_at, last_delivered_at, failing_since, gave_up_at, 0
            """, Self.webhook)
        guard let webhook = rows.first else { throw WebhookStoreError.noRowReturned }
        return (webhook, secret)
    }

    /// Every endpoint, oldest first, with its pending events counted.
    func all() async throws -> [Webhook] {
        try await database.rows(
            """
            SELECT w.id, w.url, w.types, w.created_at, w.last_delivered_at, w.failing_since, w.gave_up_at,
                   (SELECT count(*) FROM outbox_events AS e
                    WHERE e.position >= w.delivered_through AND (e.position > w.delivered_through OR e.within > w.delivered_within)
                      AND (w.types IS NULL OR e.type = ANY (w.types)))::int
            FROM webhooks AS w ORDER BY w.id
            """, Self.webhook)
    }

    /// Removes an endpoint; false when there is none with the id.
    func delete(id: Int64) async throws -> Bool {
        try await !database.rows("DELETE FROM webhooks WHERE id = \(id) RETURNING 1") { _ in () }.isEmpty
    }

    /// Every endpoint, as the lease sees it: renews the leases `holder` has and takes those whose
    /// lease ran out (their instance stopped or died), of endpoints not given up. One statement, run
    /// every second while any endpoint exists.
    func lease(holder: String, for duration: Duration) async throws -> Leases {
        let rows = try await database.rows(
            """
            WITH taken AS (
                UPDATE webhooks
                SET lease_holder = \(holder), lease_until = now() + make_interval(secs => \(duration.seconds))
                WHERE gave_up_at IS NULL AND (lease_holder = \(holder) OR lease_until IS NULL OR lease_until < now())
                RETURNING id
            )
            SELECT w.id, w.url, w.types, w.secret, w.delivered_through, w.delivered_within, w.attempts,
                   greatest(extract(epoch FROM w.next_attempt_at - now()), 0)::float8,
                   t.id IS NOT NULL, w.failing_since IS NOT NULL OR w.gave_up_at IS NOT NULL
            FROM webhooks AS w LEFT JOIN taken AS t ON t.id = w.id
            """
        ) { row in
            let (id, url, types, secret, through, within, attempts, retryIn, mine, failing) = try row.decode(
                (Int64, String, [String]?, String, Int64, Int?, Int, Double, Bool, Bool).self)
            let lease = WebhookLease(
                id: id, url: url, types: types?.compactMap(EventType.init), secret: secret,
                delivered: EventCursor(position: through, within: within),
                attempts: attempts, retryIn: .milliseconds(Int64(retryIn * 1000)))
            return (lease, mine, failing)
        }
        return Leases(held: rows.filter(\.1).map(\.0), endpoints: rows.count, failing: rows.count(where: \.2))
    }

    /// What one look at the endpoints found.
    struct Leases: Sendable {
        /// The endpoints this instance delivers to now.
        var held: [WebhookLease]
        /// Endpoints registered, held by any instance or given up.
        var endpoints: Int
        /// Endpoints failing now, or given up.
        var failing: Int
    }

    /// Lets the endpoints go at shutdown, so another instance takes them at once.
    func release(holder: String) async throws {
        _ = try await database.rows("UPDATE webhooks SET lease_holder = NULL, lease_until = NULL WHERE lease_holder = \(holder) RETURNING 1") { _ in () }
    }

    /// Records that the endpoint has every event up to `cursor`: acknowledged by it (`delivered`), or
    /// none of them of its types. False when `holder` lost the lease (another instance delivers now).
    func advance(id: Int64, holder: String, through cursor: EventCursor, delivered: Bool) async throws -> Bool {
        try await !database.rows(
            """
            UPDATE webhooks
            SET delivered_through = \(cursor.position), delivered_within = \(cursor.within),
                failing_since = NULL, attempts = 0, next_attempt_at = NULL,
                last_delivered_at = CASE WHEN \(delivered) THEN now() ELSE last_delivered_at END
            WHERE id = \(id) AND lease_holder = \(holder)
              -- Only forward; a whole row (no within) comes after any part of it.
              AND (delivered_through, coalesce(delivered_within, 2147483647)) < (\(cursor.position), \(cursor.within ?? Int(Int32.max)))
            RETURNING 1
            """
        ) { _ in () }.isEmpty
    }

    /// Records a failed delivery: retried after `backoff`, or given up once failing for `giveUp`. True
    /// when given up (or the lease is lost): this instance stops delivering to it.
    func failed(id: Int64, holder: String, backoff: Duration, giveUp: Duration) async throws -> Bool {
        let rows = try await database.rows(
            """
            UPDATE webhooks
            SET attempts = attempts + 1,
                failing_since = coalesce(failing_since, now()),
                next_attempt_at = now() + make_interval(secs => \(backoff.seconds)),
                gave_up_at = CASE WHEN now() - coalesce(failing_since, now()) >= make_interval(secs => \(giveUp.seconds))
                                  THEN now() END
            WHERE id = \(id) AND lease_holder = \(holder)
            RETURNING gave_up_at IS NOT NULL
            """
        ) { try $0.decode(Bool.self) }
        return rows.first ?? true
    }

    /// `whsec_` and 32 random bytes in hex.
    static func newSecret() -> String {
        "whsec_" + SymmetricKey(size: .bits256).withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
    }

    @Sendable static func webhook(_ row: PostgresRow) throws -> Webhook {
        let (id, url, types, createdAt, lastDeliveredAt, failingSince, gaveUpAt, pending) = try row.decode(
            (Int64, String, [String]?, Date, Date?, Date?, Date?, Int).self)
        return Webhook(
            id: id, url: url, types: types?.compactMap(EventType.init), createdAt: createdAt, lastDeliveredAt: lastDeliveredAt,
            failingSince: failingSince, gaveUpAt: gaveUpAt, pending: pending)
    }
}

enum WebhookStoreError: Error {
    case noRowReturned
}

extension Duration {
    /// In seconds, fractions kept.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
