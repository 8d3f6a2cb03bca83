import Foundation
import Logging

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
/// retry after the sale) come from memory. The rest go to the database, grouped per coupon with the
/// other requests that arrive while a transaction is in flight (`maxGroupSize` 1 turns grouping
/// off: one transaction per request).
public struct TicketIssuer: Sendable {
    let store: IssuanceStore
    let catalogue: CouponCatalogue?
    let groups: IssuanceGroups?
    /// Longest wait for the database before the request gets 503.
    let timeout: Duration
    let metrics: CouponMetrics

    public init(
        store: IssuanceStore, catalogue: CouponCatalogue?, maxGroupSize: Int, timeout: Duration = .seconds(3),
        metrics: CouponMetrics = CouponMetrics()
    ) {
        self.store = store
        self.catalogue = catalogue
        self.timeout = timeout
        self.metrics = metrics
        self.groups = maxGroupSize > 1
            ? IssuanceGroups(maxGroupSize: maxGroupSize, timeout: timeout) { [store, metrics] couponID, group in
                try await store.issue(couponID: couponID) {
                    let users = group()
                    if !users.isEmpty { metrics.groupSize.record(users.count) }
                    return users
                }
            }
            : nil
    }

    public func issue(couponID: Int64, userID: String) async throws -> IssueOutcome {
        let start = ContinuousClock.now
        if let answer = catalogue?.answer(couponID: couponID, userID: userID, now: Date()) {
            metrics.record(.success(answer), from: .cache, after: .now - start)
            return answer
        }
        let result: Result<IssueOutcome, any Error>
        do { result = .success(try await issueInDatabase(couponID: couponID, userID: userID)) } catch { result = .failure(error) }
        metrics.record(result, from: .database, after: .now - start)
        return try result.get()
    }

    private func issueInDatabase(couponID: Int64, userID: String) async throws -> IssueOutcome {
        let outcome: IssueOutcome
        if let groups {
            outcome = try await groups.issue(couponID: couponID, userID: userID)
        } else {
            let outcomes = try await withDeadline(timeout) { [store] in try await store.issue(couponID: couponID, userIDs: [userID]) }
            guard let own = outcomes[userID] else { throw IssuanceError.userMissingFromResult(userID) }
            outcome = own
        }
        if outcome == .couponNotFound { catalogue?.learnMissing(couponID: couponID) }
        return outcome
    }
}
