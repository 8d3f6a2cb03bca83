import Foundation
import Logging
import PostgresNIO

/// Creates, reads and changes coupons. Ticket rows are made here, with the coupon, never on demand.
struct CouponStore: Sendable {
    enum Change: Sendable, Equatable {
        case changed(Coupon)
        case notFound
        case belowIssued(issued: Int)
        /// The window would end at or before it starts.
        case windowOutOfOrder(startsAt: Date, endsAt: Date)
    }

    let database: Database
    var logger: Logger { database.logger }

    /// An admin write (`Database.adminTransaction`).
    func create(name: String, quantity: Int, startsAt: Date?, endsAt: Date?, redeemUntil: Date? = nil) async throws -> Coupon {
        let logger = logger
        let coupon = try await database.adminTransaction { connection in
            let rows = try await connection.query(
                """
                INSERT INTO coupons (name, quantity, starts_at, ends_at, redeem_until)
                VALUES (\(name), \(quantity), \(startsAt), \(endsAt), \(redeemUntil))
                RETURNING \(unescaped: Self.columns)
                """, logger: logger)
            guard let coupon = try await Self.coupons(in: rows).first else { throw CouponStoreError.noRowReturned }
            try await connection.execute("SELECT add_coupon_tickets(\(coupon.id), 1, \(quantity))", logger: logger)
            return coupon
        }
        database.eventsCommitted()
        return coupon
    }

    func find(id: Int64) async throws -> Coupon? {
        try await database.rows("SELECT \(unescaped: Self.columns) FROM coupons WHERE id = \(id)", Self.coupon).first
    }

    /// Tickets left of each coupon named that exists.
    func remaining(ids: [Int64]) async throws -> [Int64: Int] {
        let rows = try await database.rows("SELECT id, quantity - issued_count FROM coupons WHERE id = ANY (\(ids))") {
            try $0.decode((Int64, Int).self)
        }
        return Dictionary(rows, uniquingKeysWith: { first, _ in first })
    }

    /// Sets what the change names. A new quantity adds ticket rows when raised and drops free ones
    /// (highest numbers) when lowered; `redeemUntil` `.some(nil)` clears the redemption deadline.
    ///
    /// Changes of one coupon take turns on an advisory lock, which issuance never takes. A raise
    /// writes its new rows before it locks the coupon row (issuance caps its claims at the quantity,
    /// so rows beyond it are never issued), and holds that lock only to set the quantity: issuance
    /// goes on while a large raise generates its rows. An admin write (`Database.adminTransaction`).
    func change(id: Int64, _ change: CouponChange) async throws -> Change {
        let logger = logger
        let outcome: Change = try await database.adminTransaction { connection in
            try await connection.execute("SELECT pg_advisory_xact_lock(\(Self.resizeLockSpace) # \(id))", logger: logger)
            let current = try await connection.query("SELECT quantity, starts_at, ends_at FROM coupons WHERE id = \(id)", logger: logger)
            guard let (currentQuantity, startsAt, endsAt) = try await current.decode((Int, Date?, Date?).self).first(where: { _ in true }) else {
                return .notFound
            }
            // The window after the change, as coupons_window_ordered will judge it (every change of
            // the coupon holds the advisory lock, so it stands until the UPDATE).
            if let starts = change.startsAt ?? startsAt, let ends = change.endsAt ?? endsAt, starts >= ends {
                return .windowOutOfOrder(startsAt: starts, endsAt: ends)
            }
            let quantity = change.quantity ?? currentQuantity
            if quantity > currentQuantity {
                let highest = try await connection.query(
                    "SELECT coalesce(max(number), 0) FROM coupon_tickets WHERE coupon_id = \(id)", logger: logger)
                let last = try await highest.decode(Int.self).first(where: { _ in true }) ?? 0
                // A call of its own, so that on Citus it runs on the coupon's worker (migrations/0007).
                try await connection.execute(
                    "SELECT add_coupon_tickets(\(id), \(last + 1), \(last + quantity - currentQuantity))", logger: logger)
            }
            let locked = try await connection.query(
                "SELECT issued_count FROM coupons WHERE id = \(id) FOR NO KEY UPDATE", logger: logger)
            guard let issued = try await locked.decode(Int.self).first(where: { _ in true }) else { return .notFound }
            guard quantity >= issued else { return .belowIssued(issued: issued) }
            if quantity < currentQuantity {
                try await connection.execute(
                    """
                    DELETE FROM coupon_tickets WHERE coupon_id = \(id) AND number IN (
                        SELECT number FROM coupon_tickets WHERE coupon_id = \(id) AND issued_at IS NULL
                        ORDER BY number DESC LIMIT \(currentQuantity - quantity))
                    """, logger: logger)
            }
            let rows = try await connection.query(
                """
                UPDATE coupons SET quantity = \(quantity),
                    starts_at = CASE WHEN \(change.startsAt != nil) THEN \(change.startsAt ?? nil) ELSE starts_at END,
                    ends_at = CASE WHEN \(change.endsAt != nil) THEN \(change.endsAt ?? nil) ELSE ends_at END,
                    redeem_until = CASE WHEN \(change.redeemUntil != nil) THEN \(change.redeemUntil ?? nil) ELSE redeem_until END
                WHERE id = \(id)
                RETURNING \(unescaped: Self.columns)
                """, logger: logger)
            guard let coupon = try await Self.coupons(in: rows).first else { throw CouponStoreError.noRowReturned }
            return .changed(coupon)
        }
        if case .changed = outcome { database.eventsCommitted() }
        return outcome
    }

    /// Ends the sale now on the database's clock (`close_sale`, migrations/functions/close_sale.sql):
    /// nothing is issued after it commits, on any instance; nil when there is no such coupon. An
    /// admin write, in turn with the coupon's other changes.
    func close(id: Int64) async throws -> Coupon? {
        let logger = logger
        let coupon: Coupon? = try await database.adminTransaction { connection in
            try await connection.execute("SELECT pg_advisory_xact_lock(\(Self.resizeLockSpace) # \(id))", logger: logger)
            // A call of its own, so that on Citus it runs on the coupon's worker (migrations/0007).
            let rows = try await connection.query("SELECT \(unescaped: Self.columns) FROM close_sale(\(id))", logger: logger)
            return try await Self.coupons(in: rows).first
        }
        if coupon != nil { database.eventsCommitted() }
        return coupon
    }

    /// Resizes lock `resizeLockSpace # couponID`; a collision with another advisory lock only makes
    /// one of them wait.
    static let resizeLockSpace: Int64 = 0x636F_7570_6F6E_0000  // "coupon\0\0"

    /// What every query returns of a coupon, in the order `coupons(in:)` reads.
    static let columns = "id, name, quantity, issued_count, starts_at, ends_at, redeem_until, created_at"

    /// A row of `columns`.
    @Sendable static func coupon(_ row: PostgresRow) throws -> Coupon { try coupon(row.makeRandomAccess()) }

    /// `columns` from `first` on; the one place they are decoded.
    static func coupon(_ row: PostgresRandomAccessRow, from first: Int = 0) throws -> Coupon {
        Coupon(
            id: try row[first].decode(Int64.self), name: try row[first + 1].decode(String.self),
            quantity: try row[first + 2].decode(Int.self), issued: try row[first + 3].decode(Int.self),
            startsAt: try row[first + 4].decode(Date?.self), endsAt: try row[first + 5].decode(Date?.self),
            redeemUntil: try row[first + 6].decode(Date?.self), createdAt: try row[first + 7].decode(Date.self))
    }

    static func coupons(in rows: PostgresRowSequence) async throws -> [Coupon] {
        var coupons: [Coupon] = []
        for try await row in rows { coupons.append(try coupon(row)) }
        return coupons
    }
}

/// What `PATCH /v1/coupons/{id}` changes: nil leaves a field as it is; `.some(nil)` clears an instant.
struct CouponChange: Sendable, Equatable {
    var quantity: Int?
    var startsAt: Date?? = nil
    var endsAt: Date?? = nil
    var redeemUntil: Date?? = nil
}

enum CouponStoreError: Error {
    case noRowReturned
}
