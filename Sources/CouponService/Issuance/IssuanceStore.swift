import Foundation
import Logging
import PostgresNIO

/// The issuance SQL: `issue_tickets` (migrations/functions/issue_tickets.sql) for a group of users of one coupon, in its
/// own READ COMMITTED transaction. Returns only after COMMIT, so every `.issued` ticket is durable
/// before anyone hears of it.
struct IssuanceStore: IssuanceDatabase {
    let primary: PrimaryDatabase
    var client: PostgresClient { primary.client }
    let logger: Logger
    let metrics: CouponMetrics

    /// Runs `body` with a pooled connection; the wait for it is measured.
    func withConnection<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let asked = ContinuousClock.now
        return try await client.withConnection { connection in
            metrics.poolWait.recordNanoseconds((.now - asked).nanoseconds)
            return try await body(connection)
        }
    }

    /// One transaction on a connection of its own (an admin's grant): one outcome per distinct user.
    func issue(couponID: Int64, userIDs: [String]) async throws -> [String: IssueOutcome] {
        try await withConnection { connection in try await issue(couponID: couponID, userIDs: userIDs, on: connection) }
    }

    /// One transaction: one outcome per distinct user, returned only after COMMIT.
    func issue(couponID: Int64, userIDs: [String], on connection: PostgresConnection) async throws -> [String: IssueOutcome] {
        guard !userIDs.isEmpty else { return [:] }
        metrics.groupSize.record(userIDs.count)
        let rows = try await issueInTransaction(couponID: couponID, userIDs: userIDs, on: connection)
        // Committed: counted whether or not the requests are still waiting for their answers.
        let issued = rows.count { $0.1 == TicketOutcome.issued.rawValue }
        metrics.ticketsIssued.increment(by: issued)
        metrics.sales.issued(issued, couponID: couponID)
        var outcomes: [String: IssueOutcome] = [:]
        for (userID, outcome, number, code, issuedAt) in rows {
            outcomes[userID] = try IssueOutcome(outcome, couponID: couponID, userID: userID, number, code, issuedAt)
        }
        return outcomes
    }

    /// One READ COMMITTED transaction in one round trip: BEGIN, `issue_tickets` and COMMIT are sent
    /// together, so the coupon's row lock, which `issue_tickets` takes first, is held for
    /// PostgreSQL's own work and the commit, never across a round trip to this process
    /// (bench/results/speed-attempts.md). Rows are decoded after COMMIT: a decoding failure answers
    /// 503 for tickets that are committed, which a retry then returns (200).
    private func issueInTransaction(
        couponID: Int64, userIDs: [String], on connection: PostgresConnection
    ) async throws -> [(String, String, Int?, String?, Date?)] {
        let begin: EventLoopFuture<PostgresQueryResult> = connection.query("BEGIN", logger: logger)
        let issue: EventLoopFuture<PostgresQueryResult> = connection.query(
            "SELECT user_id, outcome, number, code, issued_at FROM issue_tickets(\(couponID), \(userIDs))", logger: logger)
        // After a failed statement PostgreSQL answers this COMMIT with ROLLBACK: nothing is kept.
        let commit: EventLoopFuture<PostgresQueryResult> = connection.query("COMMIT", logger: logger)
        let begun: Result<PostgresQueryResult, any Error>
        do { begun = .success(try await begin.get()) } catch { begun = .failure(error) }
        let issued: Result<PostgresQueryResult, any Error>
        do { issued = .success(try await issue.get()) } catch { issued = .failure(error) }
        let committed: Result<PostgresQueryResult, any Error>
        do { committed = .success(try await commit.get()) } catch { committed = .failure(error) }
        _ = try begun.get()
        let result = try issued.get()
        let command = try committed.get().metadata.command
        guard command == "COMMIT" else { throw IssuanceError.notCommitted(command) }
        return try result.rows.map { try $0.decode((String, String, Int?, String?, Date?).self) }
    }
}

enum IssuanceError: Error {
    case unknownOutcome(String)
    case userMissingFromResult(String)
    case notCommitted(String)
}
