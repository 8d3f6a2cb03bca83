import Foundation
import Synchronization

/// Group issuance: per coupon, the requests that arrive while a transaction is in flight wait and
/// go together in the next one.
///
/// Every issuance of a coupon queues on its row lock anyway; one transaction for a group pays that
/// lock, the round trips and the commit flush once instead of once per ticket. Nothing waits on
/// purpose: an idle coupon starts a transaction at once. Each request still gets its own answer
/// only after its group's COMMIT.
final class IssuanceGroups: Sendable {
    typealias Issue = @Sendable (_ couponID: Int64, _ userIDs: [String]) async throws -> [String: IssueOutcome]

    private struct Waiter {
        var userID: String
        var arrived: ContinuousClock.Instant
        var continuation: CheckedContinuation<IssueOutcome, any Error>
    }

    private struct Queue {
        var waiting: [Waiter] = []
        var inFlight = 0
    }

    /// Largest group in one transaction.
    let maxGroupSize: Int
    /// Transactions in flight per coupon: a second one waits on the row lock while the first
    /// commits, so the lock is never idle for a round trip.
    let maxInFlight: Int
    /// A request that waited this long before its group started is answered 503 without trying.
    let timeout: Duration
    private let issue: Issue
    private let queues = Mutex<[Int64: Queue]>([:])

    init(maxGroupSize: Int, maxInFlight: Int = 2, timeout: Duration, issue: @escaping Issue) {
        precondition(maxGroupSize > 0 && maxInFlight > 0)
        self.maxGroupSize = maxGroupSize
        self.maxInFlight = maxInFlight
        self.timeout = timeout
        self.issue = issue
    }

    func issue(couponID: Int64, userID: String) async throws -> IssueOutcome {
        try await withCheckedThrowingContinuation { continuation in
            let waiter = Waiter(userID: userID, arrived: .now, continuation: continuation)
            let group = queues.withLock { queues in
                queues[couponID, default: Queue()].waiting.append(waiter)
                return Self.nextGroup(couponID, &queues, maxGroupSize: maxGroupSize, maxInFlight: maxInFlight, finished: false)
            }
            if let group { Task { await run(couponID: couponID, first: group) } }
        }
    }

    /// Runs groups of one coupon until none is waiting.
    private func run(couponID: Int64, first: [Waiter]) async {
        var group: [Waiter]? = first
        while let current = group {
            await issue(couponID: couponID, group: current)
            group = queues.withLock { queues in
                Self.nextGroup(couponID, &queues, maxGroupSize: maxGroupSize, maxInFlight: maxInFlight, finished: true)
            }
        }
    }

    /// Takes the next group when a transaction slot is free; `finished` gives back the caller's slot.
    private static func nextGroup(
        _ couponID: Int64, _ queues: inout [Int64: Queue], maxGroupSize: Int, maxInFlight: Int, finished: Bool
    ) -> [Waiter]? {
        guard var queue = queues[couponID] else { return nil }
        if finished { queue.inFlight -= 1 }
        defer { queues[couponID] = queue.waiting.isEmpty && queue.inFlight == 0 ? nil : queue }
        guard !queue.waiting.isEmpty, queue.inFlight < maxInFlight else { return nil }
        let count = min(maxGroupSize, queue.waiting.count)
        let group = Array(queue.waiting.prefix(count))
        queue.waiting.removeFirst(count)
        queue.inFlight += 1
        return group
    }

    private func issue(couponID: Int64, group: [Waiter]) async {
        let now = ContinuousClock.now
        let (late, current) = group.partitioned { now - $0.arrived >= timeout }
        for waiter in late { waiter.continuation.resume(throwing: DeadlineExceeded()) }
        guard !current.isEmpty else { return }
        do {
            let outcomes = try await withDeadline(timeout) { [issue] in
                try await issue(couponID, current.map(\.userID))
            }
            var answered: Set<String> = []
            for waiter in current {
                guard let outcome = outcomes[waiter.userID] else {
                    waiter.continuation.resume(throwing: IssuanceError.userMissingFromResult(waiter.userID))
                    continue
                }
                // The same user twice in one group: one ticket issued, the other request is its retry.
                if case .issued(let ticket) = outcome, !answered.insert(waiter.userID).inserted {
                    waiter.continuation.resume(returning: .held(ticket))
                } else {
                    waiter.continuation.resume(returning: outcome)
                }
            }
        } catch {
            for waiter in current { waiter.continuation.resume(throwing: error) }
        }
    }
}

extension Array {
    /// (matching, rest), each in the original order.
    func partitioned(by matches: (Element) -> Bool) -> ([Element], [Element]) {
        var yes: [Element] = []
        var no: [Element] = []
        for element in self { if matches(element) { yes.append(element) } else { no.append(element) } }
        return (yes, no)
    }
}
