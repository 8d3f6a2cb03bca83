import Foundation
import Logging
import PostgresNIO

/// Reads tickets users hold.
struct TicketStore: Sendable {
    let client: PostgresClient
    let logger: Logger

    init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    func ticket(couponID: Int64, userID: String) async throws -> IssuedTicket? {
        let rows = try await client.query(
            """
            SELECT number, code, issued_at FROM coupon_tickets
            WHERE coupon_id = \(couponID) AND user_id = \(userID)
            """, logger: logger)
        for try await (number, code, issuedAt) in rows.decode((Int, String, Date).self) {
            return IssuedTicket(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
        }
        return nil
    }
}
