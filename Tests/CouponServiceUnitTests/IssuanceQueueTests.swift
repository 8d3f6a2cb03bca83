@testable import CouponService
import CouponTestSupport
import Foundation
import Synchronization
import Testing

/// The grouping logic alone, with a stand-in for the database: a row lock that transactions queue
/// on, a first transaction held until released, and a record of the groups.
@Suite struct IssuanceQueueTests {
    actor RowLock {
        private var held = false
        private var queue: [CheckedContinuation<Void, Never>] = []

        func lock() async {
            if !held { held = true; return }
            await withCheckedContinuation { queue.append($0) }
        }

        func unlock() {
            if queue.isEmpty { held = false } else { queue.removeFirst().resume() }
        }
    }

    final class FakeDatabase: IssuanceDatabase {
        let groups = Mutex<[[String]]>([])
        let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let rowLock = RowLock()
        let failing: @Sendable ([String]) -> Bool

        init(failing: @escaping @Sendable ([String]) -> Bool = { _ in false }) { self.failing = failing }

        func issue(couponID: Int64, takeGroup: @escaping @Sendable () -> [String]) async throws -> [String: IssueOutcome] {
            await rowLock.lock()
            let userIDs = takeGroup()
            let first = groups.withLock { groups in
                if !userIDs.isEmpty { groups.append(userIDs) }
                return groups.count == 1 && !userIDs.isEmpty
            }
            if first { await withCheckedContinuation { continuation in gate.withLock { $0 = continuation } } }
            await rowLock.unlock()
            if failing(userIDs) { throw DatabaseDown() }
            var outcomes: [String: IssueOutcome] = [:]
            for (index, user) in Set(userIDs).sorted().enumerated() {
                outcomes[user] = .issued(IssuedTicket(couponID: couponID, userID: user, number: index, code: user, issuedAt: Date()))
            }
            return outcomes
        }

        /// Lets the first transaction commit, once it is waiting.
        func release() async {
            var continuation: CheckedContinuation<Void, Never>?
            let waiting = await waitUntil {
                continuation = gate.withLock { $0.take() }
                return continuation != nil
            }
            #expect(waiting, "the first transaction never waited")
            continuation?.resume()
        }

        func waitForFirstGroup() async {
            #expect(await waitUntil { groups.withLock { !$0.isEmpty } }, "no group was taken")
        }
    }

    struct DatabaseDown: Error {}

    /// A database whose row lock never comes.
    struct NoLock: IssuanceDatabase {
        func issue(couponID: Int64, takeGroup: @escaping @Sendable () -> [String]) async throws -> [String: IssueOutcome] {
            try await Task.sleep(for: .seconds(3600))
            return [:]
        }
    }

    /// Issues "first" (held in its transaction), then `users` behind it, then lets it go once they all
    /// wait in the queue (and `hold` has passed, for a test of the deadline).
    func issue(
        _ users: [String], through groups: IssuanceQueue, database: FakeDatabase, hold: Duration = .zero
    ) async -> [(String, Result<IssueOutcome, any Error>)] {
        await withTaskGroup(of: (String, Result<IssueOutcome, any Error>).self) { group in
            group.addTask { ("first", await attempt { try await groups.issue(couponID: 1, userID: "first") }) }
            await database.waitForFirstGroup()
            for user in users {
                group.addTask { (user, await attempt { try await groups.issue(couponID: 1, userID: user) }) }
            }
            #expect(await waitUntil { groups.waitingCount(couponID: 1) == users.count }, "the requests never queued")
            try? await Task.sleep(for: hold)
            await database.release()
            return await group.reduce(into: []) { $0.append($1) }
        }
    }

    @Test func requestsArrivingDuringATransactionGoTogetherWithinTheCap() async {
        let database = FakeDatabase()
        let groups = IssuanceQueue(database: database, maxGroupSize: 64, maxTransactions: 1, timeout: .seconds(60), metrics: CouponMetrics())
        let results = await issue((0..<300).map { "u\($0)" }, through: groups, database: database)
        #expect(results.count == 301)
        #expect(results.allSatisfy { if case .success(.issued) = $0.1 { true } else { false } })
        let sizes = database.groups.withLock { $0.map(\.count) }
        #expect(sizes == [1, 64, 64, 64, 64, 44])
    }

    @Test func theNextTransactionTakesItsGroupOnceItHoldsTheLock() async {
        let database = FakeDatabase()
        let groups = IssuanceQueue(database: database, maxGroupSize: 512, maxTransactions: 2, timeout: .seconds(60), metrics: CouponMetrics())
        _ = await issue((0..<100).map { "u\($0)" }, through: groups, database: database)
        // The second transaction started with the second request but waited on the lock: it takes
        // all hundred that arrived meanwhile, not just the one that started it.
        #expect(database.groups.withLock { $0.map(\.count) } == [1, 100])
    }

    @Test func theSameUserTwiceInAGroupGetsOneIssuedAndOneHeld() async {
        let database = FakeDatabase()
        let groups = IssuanceQueue(database: database, maxGroupSize: 64, maxTransactions: 1, timeout: .seconds(60), metrics: CouponMetrics())
        let results = await issue(Array(repeating: "twin", count: 5), through: groups, database: database)
        #expect(database.groups.withLock { $0.last?.count } == 5)
        #expect(results.filter { if case .success(.issued(let t)) = $0.1 { t.userID == "twin" } else { false } }.count == 1)
        #expect(results.filter { if case .success(.held(let t)) = $0.1 { t.userID == "twin" } else { false } }.count == 4)
    }

    @Test func aFailedTransactionFailsOnlyItsOwnGroup() async {
        let database = FakeDatabase(failing: { $0.contains("doomed") })
        let groups = IssuanceQueue(database: database, maxGroupSize: 2, maxTransactions: 1, timeout: .seconds(60), metrics: CouponMetrics())
        let results = await issue(["doomed", "a", "b", "c"], through: groups, database: database)
        let failedGroup = database.groups.withLock { $0.first { $0.contains("doomed") } } ?? []
        #expect(failedGroup.count == 2)
        for (user, result) in results {
            if failedGroup.contains(user) {
                #expect(throws: DatabaseDown.self) { try result.get() }
            } else {
                #expect((try? result.get()) != nil, "\(user) was not in the failed group")
            }
        }
    }

    /// A database that never grants the lock: every request still gets its answer.
    @Test(.timeLimit(.minutes(1))) func aLockThatNeverComesStillAnswersEveryone() async {
        let groups = IssuanceQueue(database: NoLock(), maxGroupSize: 4, timeout: .milliseconds(50), metrics: CouponMetrics())
        let results = await withTaskGroup(of: Result<IssueOutcome, any Error>.self) { group in
            for user in 0..<10 { group.addTask { await attempt { try await groups.issue(couponID: 1, userID: "u\(user)") } } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 10)
        #expect(results.allSatisfy { if case .failure(let error) = $0 { error is DeadlineExceeded } else { false } })
    }

    @Test func requestsThatWaitedPastTheDeadlineAreAnsweredWithoutTrying() async {
        let database = FakeDatabase()
        let groups = IssuanceQueue(database: database, maxGroupSize: 64, maxTransactions: 1, timeout: .milliseconds(100), metrics: CouponMetrics())
        let results = await issue(["late"], through: groups, database: database, hold: .milliseconds(200))
        #expect(results.allSatisfy { if case .failure(let error) = $0.1 { error is DeadlineExceeded } else { false } })
        #expect(database.groups.withLock { $0 } == [["first"]], "the late request never reached the database")
    }
}

func attempt(_ body: () async throws -> IssueOutcome) async -> Result<IssueOutcome, any Error> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
