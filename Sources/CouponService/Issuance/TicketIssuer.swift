import Foundation

/// Issues tickets: the one place that decides who gets one.
///
/// First the catalogue: refusals it can give (sold out, not started, ended, no such coupon) come
/// from memory (right after a sell-out, once the coupon's holders are loaded: the request waits for
/// that load), and a request it would refuse unless the user holds a ticket (a likely holder of a
/// final coupon) costs one indexed read of that ticket, and an id above every coupon heard of one
/// read of the coupon (cached when missing). Then the queue: everyone else is issued in
/// the database, grouped per coupon. Then the metrics: every answer counted by where it came from.
struct TicketIssuer: Sendable {
    let catalogue: CouponCatalogue
    let queue: IssuanceQueue<IssuanceStore, ContinuousClock>
    let coupons: CouponStore
    /// Grants go straight to the store: an admin's list is one group already.
    let store: IssuanceStore
    let tickets: TicketStore
    let metrics: CouponMetrics

    func issue(couponID: Int64, userID: String) async throws -> TicketAnswer {
        let start = ContinuousClock.now
        var known = catalogue.answer(couponID: couponID, userID: userID)
        if case .refusedOnceHoldersLoad = known {
            // The moment after a sell-out: wait for the one load of the holders, then ask memory again.
            await catalogue.waitForHolders(couponID: couponID, atMost: queue.timeout)
            known = catalogue.answer(couponID: couponID, userID: userID)
        }
        let question: Question
        switch known {
        case .refused(let refusal):
            let answer = TicketAnswer(outcome: refusal)
            metrics.record(.success(answer), couponID: couponID, from: .cache, after: .now - start)
            return answer
        case .refusedUnlessHolder(let refusal), .refusedOnceHoldersLoad(let refusal): question = .holder(unless: refusal)
        case .unheardOf: question = .coupon
        case nil: question = .issuance
        }
        let source: CouponMetrics.Source = question == .issuance ? .database : .lookup
        do {
            let answer = try await ask(question, couponID: couponID, userID: userID)
            metrics.record(.success(answer), couponID: couponID, from: source, after: .now - start)
            return answer
        } catch {
            metrics.record(.failure(error), couponID: couponID, from: source, after: .now - start)
            throw error
        }
    }

    /// What the database is asked when memory cannot answer: whether the user holds a ticket (else
    /// the refusal), whether an id nobody heard of is a coupon, or the issuance itself.
    private enum Question: Equatable {
        case holder(unless: TicketOutcome)
        case coupon
        case issuance
    }

    private func ask(_ question: Question, couponID: Int64, userID: String) async throws -> TicketAnswer {
        switch question {
        case .holder(let refusal):
            let record = try await tickets.record(couponID: couponID, userID: userID)
            return TicketAnswer(outcome: record == nil ? refusal : .alreadyIssued, ticket: record)
        case .coupon:
            // Not through the queue: an id nobody created must not wait behind a sale, nor hold a
            // transaction; one read of the coupon by its key tells, and a missing one is remembered.
            guard try await coupons.find(id: couponID) != nil else {
                catalogue.learnMissing(couponID: couponID)
                return TicketAnswer(outcome: .couponNotFound)
            }
            return try await queue.issue(couponID: couponID, userID: userID)
        case .issuance:
            let answer = try await queue.issue(couponID: couponID, userID: userID)
            if answer.outcome == .couponNotFound { catalogue.learnMissing(couponID: couponID) }
            return answer
        }
    }

    /// Issues to a list of users through `issue_tickets`, in transactions of up to `grantGroupSize`
    /// (each holds the coupon's lock briefly, so a sale going on meanwhile waits little); one outcome
    /// per user asked, in the order asked. A user asked twice gets the ticket once and `alreadyIssued` after.
    /// An admin write (`Database.adminWrite`).
    func grant(couponID: Int64, userIDs: [String]) async throws -> [(userID: String, answer: TicketAnswer)] {
        try await store.database.adminWrite { [self] in try await grantNow(couponID: couponID, userIDs: userIDs) }
    }

    private func grantNow(couponID: Int64, userIDs: [String]) async throws -> [(userID: String, answer: TicketAnswer)] {
        var outcomes: [String: TicketAnswer] = [:]
        var start = userIDs.startIndex
        while start < userIDs.endIndex {
            let end = min(start + Self.grantGroupSize, userIDs.endIndex)
            let group = userIDs[start..<end].filter { outcomes[$0] == nil }
            outcomes.merge(try await store.issue(couponID: couponID, userIDs: group)) { first, _ in first }
            start = end
        }
        return try zip(userIDs, TicketAnswer.perRequest(userIDs, from: outcomes)).map { userID, answer in
            guard let answer else { throw IssuanceError.userMissingFromResult(userID) }
            return (userID, answer)
        }
    }

    static let grantGroupSize = 1_000
}
