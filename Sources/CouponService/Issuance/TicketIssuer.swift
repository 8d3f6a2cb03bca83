import Foundation
import Logging

/// Issues tickets: the one place that decides who gets one.
///
/// Refusals the catalogue can give (sold out, not started, ended, no such coupon) come from memory. A
/// request the catalogue would refuse unless the user holds a ticket (a likely holder of a final
/// coupon, or one whose holders are not loaded yet) costs one indexed read of that ticket. The rest go
/// to the database, grouped per coupon with the other requests that arrive while a transaction is in
/// flight (`maxGroupSize` 1 turns grouping off: one transaction per request).
struct TicketIssuer: Sendable {
    let store: IssuanceStore
    let tickets: TicketStore
    let catalogue: CouponCatalogue
    let groups: IssuanceGroups?
    /// Longest wait for the database before the request gets 503.
    let timeout: Duration
    let metrics: CouponMetrics

    init(
        store: IssuanceStore, tickets: TicketStore, catalogue: CouponCatalogue, maxGroupSize: Int, timeout: Duration,
        metrics: CouponMetrics
    ) {
        self.store = store
        self.tickets = tickets
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

    func issue(couponID: Int64, userID: String) async throws -> IssueOutcome {
        let start = ContinuousClock.now
        let source: CouponMetrics.Source
        let result: Result<IssueOutcome, any Error>
        switch catalogue.answer(couponID: couponID, userID: userID) {
        case .refused(let outcome):
            metrics.record(.success(outcome), from: .cache, after: .now - start)
            return outcome
        case .refusedUnlessHolder(let refusal):
            source = .lookup
            do {
                let ticket = try await withDeadline(timeout) { [tickets] in try await tickets.ticket(couponID: couponID, userID: userID) }
                result = .success(ticket.map { .held($0) } ?? refusal)
            } catch {
                result = .failure(error)
            }
        case nil:
            source = .database
            do { result = .success(try await issueInDatabase(couponID: couponID, userID: userID)) } catch { result = .failure(error) }
        }
        metrics.record(result, from: source, after: .now - start)
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
        if outcome == .couponNotFound { catalogue.learnMissing(couponID: couponID) }
        return outcome
    }
}
