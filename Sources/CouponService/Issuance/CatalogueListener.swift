import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// Keeps the `CouponCatalogue` current from `LISTEN coupon_events` (see migrations/0002).
///
/// LISTEN needs a session of its own, so the listener owns one connection outside the pool (a
/// transaction-mode PgBouncer would break it). Notifications sent while it is disconnected are lost,
/// so after every (re)connect it listens first and then reloads everything; until that reload is
/// done the catalogue is not trusted and requests go to the database.
public struct CatalogueListener: Service {
    public static let channel = "coupon_events"
    public static let applicationName = "coupon-listener"

    let configuration: PostgresConnection.Configuration
    let catalogue: CouponCatalogue
    let logger: Logger
    let metrics: CouponMetrics
    /// Reconnect backoff starts here and doubles up to `maxBackoff`.
    let minBackoff: Duration = .milliseconds(50)
    let maxBackoff: Duration = .seconds(1)

    public init(databaseURL: DatabaseURL, catalogue: CouponCatalogue, logger: Logger, metrics: CouponMetrics = CouponMetrics()) throws {
        self.configuration = try databaseURL.connectionConfiguration(applicationName: Self.applicationName)
        self.catalogue = catalogue
        self.logger = logger
        self.metrics = metrics
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var backoff = minBackoff
            while !Task.isCancelled {
                do {
                    try await listenUntilDisconnected { backoff = minBackoff }
                } catch {
                    guard !Task.isCancelled else { break }
                    // Loud once per outage, quiet while retrying.
                    let level: Logger.Level = catalogue.listenerState == .connected ? .warning : .debug
                    logger.log(
                        level: level, "catalogue listener disconnected; requests go to the database until it is back",
                        metadata: ["error": "\(String(reflecting: error))", "retry_in": "\(backoff)"])
                }
                catalogue.distrust(.reconnecting)
                metrics.listenerConnected.record(0)
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, maxBackoff)
            }
            catalogue.distrust(.stopped)
            metrics.listenerConnected.record(0)
            logger.info("catalogue listener stopped")
        }
    }

    private func listenUntilDisconnected(onTrusted: () -> Void) async throws {
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        do {
            try await connection.listen(on: Self.channel) { notifications in
                try await reloadAll(on: connection)
                metrics.listenerConnected.record(1)
                onTrusted()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await notification in notifications {
                            guard let id = Int64(notification.payload) else { continue }
                            try await reload(couponID: id, on: connection)
                        }
                        throw ListenerError.notificationsEnded
                    }
                    group.addTask {
                        // Coupons that became final by the clock (a sale that ended) need their holders.
                        while true {
                            try await Task.sleep(for: .milliseconds(100))
                            for id in catalogue.takeHoldersWanted() { try await reload(couponID: id, on: connection) }
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    /// Reads every coupon, and the holders of the final ones, from one snapshot.
    func reloadAll(on connection: PostgresConnection) async throws {
        try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
        do {
            var entries: [Int64: CouponCatalogue.Entry] = [:]
            let now = try await databaseNow(on: connection)
            let rows = try await connection.query(
                "SELECT id, quantity, issued_count, starts_at, ends_at FROM coupons", logger: logger)
            for try await (id, quantity, issued, startsAt, endsAt) in rows.decode((Int64, Int, Int, Date?, Date?).self) {
                entries[id] = .init(quantity: quantity, issued: issued, startsAt: startsAt, endsAt: endsAt)
            }
            for (id, entry) in entries where entry.isFinal(at: now) && entry.issued > 0 {
                entries[id]?.holders = try await holders(of: id, on: connection)
            }
            let schema = try await connection.query(
                "SELECT coalesce(max(version), 0) FROM schema_migrations", logger: logger)
            let migration = try await schema.decode(Int.self).first(where: { _ in true }) ?? 0
            try await connection.query("COMMIT", logger: logger)
            catalogue.replaceAll(with: entries)
            logger.info(
                "catalogue listener connected: sold-out and window answers come from memory",
                metadata: ["coupons": "\(entries.count)", "schema_migration": "\(migration)"])
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// Reads one coupon after a notification, with its holders once nothing more can be issued.
    func reload(couponID: Int64, on connection: PostgresConnection) async throws {
        let now = try await databaseNow(on: connection)
        let rows = try await connection.query(
            "SELECT quantity, issued_count, starts_at, ends_at FROM coupons WHERE id = \(couponID)", logger: logger)
        var entry: CouponCatalogue.Entry?
        for try await (quantity, issued, startsAt, endsAt) in rows.decode((Int, Int, Date?, Date?).self) {
            entry = .init(quantity: quantity, issued: issued, startsAt: startsAt, endsAt: endsAt)
        }
        // Final means no issuer can add a holder before the next notification, so this list is complete.
        if let current = entry, current.isFinal(at: now), current.issued > 0 {
            entry?.holders = try await holders(of: couponID, on: connection)
        }
        catalogue.update(couponID: couponID, with: entry)
    }

    private func holders(of couponID: Int64, on connection: PostgresConnection) async throws -> [String: IssuedTicket] {
        let rows = try await connection.query(
            """
            SELECT user_id, number, code, issued_at FROM coupon_tickets
            WHERE coupon_id = \(couponID) AND user_id IS NOT NULL
            """, logger: logger)
        var holders: [String: IssuedTicket] = [:]
        for try await (userID, number, code, issuedAt) in rows.decode((String, Int, String, Date).self) {
            holders[userID] = IssuedTicket(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
        }
        return holders
    }

    private func databaseNow(on connection: PostgresConnection) async throws -> Date {
        let rows = try await connection.query("SELECT now()", logger: logger)
        for try await now in rows.decode(Date.self) { return now }
        return Date()
    }
}

enum ListenerError: Error {
    case notificationsEnded
}
