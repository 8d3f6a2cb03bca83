import Foundation
import Logging
import PostgresNIO

/// The catalogue's SQL: coupons as the catalogue keeps them, the database's clock, and the holders of a
/// final coupon. Each read runs on the connection it is given (the listener's own, or one from the pool).
struct CatalogueStore: Sendable {
    let logger: Logger

    /// Every coupon, from one REPEATABLE READ snapshot.
    func coupons(on connection: PostgresConnection) async throws -> [Int64: CouponCatalogue.Entry] {
        try await connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
        do {
            let rows = try await connection.query(
                "SELECT id, xmin::text::bigint, quantity, issued_count, starts_at, ends_at FROM coupons", logger: logger)
            var entries: [Int64: CouponCatalogue.Entry] = [:]
            for try await (id, revision, quantity, issued, startsAt, endsAt) in rows.decode((Int64, Int64, Int, Int, Date?, Date?).self) {
                entries[id] = .init(quantity: quantity, issued: issued, startsAt: startsAt, endsAt: endsAt, revision: revision)
            }
            try await connection.execute("COMMIT", logger: logger)
            return entries
        } catch {
            try? await connection.execute("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// One coupon; nil when it does not exist.
    func coupon(id: Int64, on connection: PostgresConnection) async throws -> CouponCatalogue.Entry? {
        let rows = try await connection.query(
            "SELECT xmin::text::bigint, quantity, issued_count, starts_at, ends_at FROM coupons WHERE id = \(id)",
            logger: logger)
        for try await (revision, quantity, issued, startsAt, endsAt) in rows.decode((Int64, Int, Int, Date?, Date?).self) {
            return .init(quantity: quantity, issued: issued, startsAt: startsAt, endsAt: endsAt, revision: revision)
        }
        return nil
    }

    /// The workers of a Citus cluster (host, port), as its coordinator names them; none on plain
    /// PostgreSQL. Triggers on distributed tables fire on the workers that hold the shards, so their
    /// notifications are sent there.
    func workers(on connection: PostgresConnection) async throws -> [(host: String, port: Int)] {
        let citus = try await connection.query(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')", logger: logger)
        guard try await citus.decode(Bool.self).first(where: { _ in true }) == true else { return [] }
        let rows = try await connection.query(
            """
            SELECT nodename, nodeport FROM pg_dist_node
            WHERE isactive AND noderole = 'primary' AND groupid <> 0 ORDER BY nodeid
            """, logger: logger)
        var workers: [(host: String, port: Int)] = []
        for try await (host, port) in rows.decode((String, Int).self) { workers.append((host, port)) }
        return workers
    }

    func databaseTime(on connection: PostgresConnection) async throws -> Date {
        let rows = try await connection.query("SELECT clock_timestamp()", logger: logger)
        for try await now in rows.decode(Date.self) { return now }
        throw CatalogueStoreError.noRowReturned
    }

    /// The coupon read again with its holders, if it is final: sold out, or ended on the database's
    /// clock. Nil when it does not exist.
    ///
    /// `FOR SHARE` waits for every issuer that holds the coupon's row lock; `issue_tickets` judges the
    /// window once it holds that lock (issue_tickets), so any issuer after this one issues nothing while the
    /// coupon stays final. The holders, read after it, are then all there are until the row changes
    /// (which moves `xmin` and notifies). The clock is read with the row, at the latest when the lock
    /// is granted, so it can only make a coupon look less ended than it is.
    func finalEntry(id: Int64, on connection: PostgresConnection) async throws -> CouponCatalogue.Entry? {
        let locked = try await connection.query(
            """
            SELECT xmin::text::bigint, quantity, issued_count, starts_at, ends_at, clock_timestamp()
            FROM coupons WHERE id = \(id) FOR SHARE
            """, logger: logger)
        var read: (entry: CouponCatalogue.Entry, now: Date)?
        for try await (revision, quantity, issued, startsAt, endsAt, now) in locked.decode(
            (Int64, Int, Int, Date?, Date?, Date).self)
        {
            read = (.init(quantity: quantity, issued: issued, startsAt: startsAt, endsAt: endsAt, revision: revision), now)
        }
        guard let read else { return nil }
        var entry = read.entry
        let ended = SaleWindow.position(of: read.now, startsAt: entry.startsAt, endsAt: entry.endsAt) == .after
        guard ended || entry.issued >= entry.quantity else { return entry }
        let rows = try await connection.query(
            "SELECT user_id FROM coupon_tickets WHERE coupon_id = \(id) AND user_id IS NOT NULL", logger: logger)
        var hashes: [UInt64] = []
        hashes.reserveCapacity(entry.issued)
        for try await userID in rows.decode(String.self) { hashes.append(HolderSet.hash(userID)) }
        entry.holders = HolderSet(hashes: hashes)
        return entry
    }
}

enum CatalogueStoreError: Error {
    case noRowReturned
}
