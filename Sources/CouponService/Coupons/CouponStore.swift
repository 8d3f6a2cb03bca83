import Foundation
import Logging
import PostgresNIO

/// Creates, reads and resizes coupons. Ticket rows are made here, with the coupon, never on demand.
public struct CouponStore: Sendable {
    public enum Resize: Sendable, Equatable {
        case resized(Coupon)
        case notFound
        case belowIssued(issued: Int)
    }

    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    public func create(name: String, quantity: Int, startsAt: Date?, endsAt: Date?) async throws -> Coupon {
        try await client.withTransaction(logger: logger) { connection in
            let rows = try await connection.query(
                """
                INSERT INTO coupons (name, quantity, starts_at, ends_at)
                VALUES (\(name), \(quantity), \(startsAt), \(endsAt))
                RETURNING id, name, quantity, issued_count, starts_at, ends_at, created_at
                """, logger: logger)
            guard let coupon = try await Self.coupons(in: rows).first else { throw CouponStoreError.noRowReturned }
            try await connection.query("SELECT add_coupon_tickets(\(coupon.id), 1, \(quantity))", logger: logger)
            return coupon
        }
    }

    public func find(id: Int64) async throws -> Coupon? {
        let rows = try await client.query(
            "SELECT id, name, quantity, issued_count, starts_at, ends_at, created_at FROM coupons WHERE id = \(id)",
            logger: logger)
        return try await Self.coupons(in: rows).first
    }

    /// Sets the quantity: adds ticket rows when raised, drops free ones (highest numbers) when lowered.
    ///
    /// The coupon row is locked first, as issuance does, so no issuer sees a half-resized coupon.
    public func resize(id: Int64, quantity: Int) async throws -> Resize {
        try await client.withTransaction(logger: logger) { connection in
            let locked = try await connection.query(
                "SELECT quantity, issued_count FROM coupons WHERE id = \(id) FOR NO KEY UPDATE", logger: logger)
            guard let (current, issued) = try await locked.decode((Int, Int).self).first(where: { _ in true }) else {
                return .notFound
            }
            guard quantity >= issued else { return .belowIssued(issued: issued) }
            if quantity > current {
                try await connection.query(
                    """
                    SELECT add_coupon_tickets(\(id), (SELECT coalesce(max(number), 0) + 1 FROM coupon_tickets WHERE coupon_id = \(id)),
                                              (SELECT coalesce(max(number), 0) FROM coupon_tickets WHERE coupon_id = \(id)) + \(quantity - current))
                    """, logger: logger)
            } else if quantity < current {
                try await connection.query(
                    """
                    DELETE FROM coupon_tickets WHERE coupon_id = \(id) AND number IN (
                        SELECT number FROM coupon_tickets WHERE coupon_id = \(id) AND issued_at IS NULL
                        ORDER BY number DESC LIMIT \(current - quantity))
                    """, logger: logger)
            }
            let rows = try await connection.query(
                """
                UPDATE coupons SET quantity = \(quantity) WHERE id = \(id)
                RETURNING id, name, quantity, issued_count, starts_at, ends_at, created_at
                """, logger: logger)
            guard let coupon = try await Self.coupons(in: rows).first else { throw CouponStoreError.noRowReturned }
            return .resized(coupon)
        }
    }

    static func coupons(in rows: PostgresRowSequence) async throws -> [Coupon] {
        var coupons: [Coupon] = []
        for try await (id, name, quantity, issued, startsAt, endsAt, createdAt) in rows.decode(
            (Int64, String, Int, Int, Date?, Date?, Date).self)
        {
            coupons.append(
                Coupon(
                    id: id, name: name, quantity: quantity, issued: issued, startsAt: startsAt, endsAt: endsAt,
                    createdAt: createdAt))
        }
        return coupons
    }
}

enum CouponStoreError: Error {
    case noRowReturned
}
