import Foundation
import Logging
import PostgresNIO

/// The issuance SQL: `issue_tickets` (migrations/functions/issue_tickets.sql) for a group of users of one coupon, in its
/// own READ COMMITTED transaction. Returns only after COMMIT, so every `.issued` ticket is durable
/// before anyone hears of it.
struct IssuanceStore: IssuanceDatabase {
    let database: Database
    let metrics: CouponMetrics
    var logger: Logger { database.logger }

    /// Runs `body` with a pooled connection; the wait for it is measured.
    func withConnection<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let asked = ContinuousClock.now
        return try await database.client.withConnection { connection in
            metrics.poolWait.recordNanoseconds((.now - asked).nanoseconds)
            return try await body(connection)
        }
    }

    /// One transaction on a connection of its own (an admin's grant): one answer per distinct user.
    func issue(couponID: Int64, userIDs: [String]) async throws -> [String: TicketAnswer] {
        try await withConnection { connection in try await issue(couponID: couponID, userIDs: userIDs, on: connection) }
    }

    /// One transaction: one answer per distinct user, returned only after COMMIT.
    func issue(couponID: Int64, userIDs: [String], on connection: PostgresConnection) async throws -> [String: TicketAnswer] {
        guard !userIDs.isEmpty else { return [:] }
        metrics.groupSize.record(userIDs.count)
        let rows = try await issueInTransaction(couponID: couponID, userIDs: userIDs, on: connection)
        // Committed: counted whether or not the requests are still waiting for their answers.
        var answers: [String: TicketAnswer] = [:]
        answers.reserveCapacity(rows.count)
        for row in rows {
            let (userID, answer) = try TicketAnswer.decode(row)
            guard let userID else { throw TicketAnswerError.unknownOutcome(answer.outcome.rawValue) }
            answers[userID] = answer
        }
        let issued = answers.values.count { $0.outcome == .issued }
        metrics.ticketsIssued.increment(by: issued)
        metrics.sales.issued(issued, couponID: couponID)
        if issued > 0 { database.eventsCommitted() }
        return answers
    }

    /// One READ COMMITTED transaction in one round trip: BEGIN, `issue_tickets` and COMMIT are sent
    /// together, so the coupon's row lock, which `issue_tickets` takes first, is held for
    /// PostgreSQL's own work and the commit, never across a round trip to this process
    /// (bench/results/speed-attempts.md). Rows are decoded after COMMIT: a decoding failure answers
    /// 503 for tickets that are committed, which a retry then returns (200).
    private func issueInTransaction(
        couponID: Int64, userIDs: [String], on connection: PostgresConnection
    ) async throws -> [PostgresRow] {
        let begin: EventLoopFuture<PostgresQueryResult> = connection.query("BEGIN", logger: logger)
        let issue: EventLoopFuture<PostgresQueryResult> = connection.query(
            "SELECT \(unescaped: TicketAnswer.columns) FROM issue_tickets(\(couponID), \(userIDs))", logger: logger)
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
        return result.rows
    }
}

enum IssuanceError: Error {
    case userMissingFromResult(String)
    case notCommitted(String)
}
