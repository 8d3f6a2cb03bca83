import Foundation
import Logging
import PostgresNIO

/// What asking for a ticket led to.
public enum IssueOutcome: Sendable, Equatable {
    /// A ticket was issued now and is committed.
    case issued(IssuedTicket)
    /// The user already held this ticket: a retry, answered the same way.
    case held(IssuedTicket)
    case soldOut
    case notStarted
    case ended
    case couponNotFound
}

/// Issues tickets: the one place that decides who gets one.
///
/// Refusals the catalogue can give (sold out, not started, ended, no such coupon, and a holder's
/// retry after the sale) come from memory. Everything else runs `issue_tickets` (migrations/0001) in
/// its own READ COMMITTED transaction and returns only after COMMIT, so every `.issued` ticket is
/// durable before anyone hears of it. The SQL takes a group of users, which is what lets a later
/// change issue concurrent requests together.
public struct TicketIssuer: Sendable {
    let client: PostgresClient
    let catalogue: CouponCatalogue?
    let logger: Logger
    /// Longest wait for the database before the request gets 503.
    let timeout: Duration

    public init(client: PostgresClient, catalogue: CouponCatalogue?, timeout: Duration = .seconds(3), logger: Logger) {
        self.client = client
        self.catalogue = catalogue
        self.timeout = timeout
        self.logger = logger
    }

    public func issue(couponID: Int64, userID: String) async throws -> IssueOutcome {
        if let answer = catalogue?.answer(couponID: couponID, userID: userID, now: Date()) { return answer }
        let outcomes = try await withDeadline(timeout) { try await issue(couponID: couponID, userIDs: [userID]) }
        guard let outcome = outcomes[userID] else { throw IssuanceError.userMissingFromResult(userID) }
        if outcome == .couponNotFound { catalogue?.learnMissing(couponID: couponID) }
        return outcome
    }

    /// Issues to every distinct user of the group in one transaction; one outcome per user.
    public func issue(couponID: Int64, userIDs: [String]) async throws -> [String: IssueOutcome] {
        let rows = try await client.withTransaction(logger: logger) { connection in
            let result = try await connection.query(
                "SELECT user_id, outcome, number, code, issued_at FROM issue_tickets(\(couponID), \(userIDs))",
                logger: logger)
            var rows: [(String, String, Int?, String?, Date?)] = []
            for try await row in result.decode((String, String, Int?, String?, Date?).self) { rows.append(row) }
            return rows
        }
        var outcomes: [String: IssueOutcome] = [:]
        for (userID, outcome, number, code, issuedAt) in rows {
            outcomes[userID] = try Self.outcome(outcome, couponID: couponID, userID: userID, number, code, issuedAt)
        }
        return outcomes
    }

    static func outcome(
        _ name: String, couponID: Int64, userID: String, _ number: Int?, _ code: String?, _ issuedAt: Date?
    ) throws -> IssueOutcome {
        func ticket() throws -> IssuedTicket {
            guard let number, let code, let issuedAt else { throw IssuanceError.unknownOutcome(name) }
            return IssuedTicket(couponID: couponID, userID: userID, number: number, code: code, issuedAt: issuedAt)
        }
        switch name {
        case "issued": return .issued(try ticket())
        case "held": return .held(try ticket())
        case "sold_out": return .soldOut
        case "not_started": return .notStarted
        case "ended": return .ended
        case "coupon_not_found": return .couponNotFound
        default: throw IssuanceError.unknownOutcome(name)
        }
    }
}

enum IssuanceError: Error {
    case unknownOutcome(String)
    case userMissingFromResult(String)
}
