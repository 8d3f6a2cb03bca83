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

    /// Its connections are the row lock: a transaction takes its group once it has one.
    final class FakeDatabase: IssuanceDatabase {
        struct Connection: Sendable {}
        let groups = Mutex<[[String]]>([])
        let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let rowLock = RowLock()
        let failing: @Sendable ([String]) -> Bool

        init(failing: @escaping @Sendable ([String]) -> Bool = { _ in false }) { self.failing = failing }

        func withConnection<T: Sendable>(_ body: @Sendable (Connection) async throws -> T) async throws -> T {
            await rowLock.lock()
            do {
                let result = try await body(Connection())
                await rowLock.unlock()
                return result
            } catch {
                await rowLock.unlock()
                throw error
            }
        }

        func issue(couponID: Int64, userIDs: [String], on connection: Connection) async throws -> [String: TicketAnswer] {
            let first = groups.withLock { groups in
                groups.append(userIDs)
                return groups.count == 1
            }
            if first { await withCheckedContinuation { continuation in gate.withLock { $0 = continuation } } }
            if failing(userIDs) { throw DatabaseDown() }
            var outcomes: [String: TicketAnswer] = [:]
            for (index, user) in Set(userIDs).sorted().enumerated() {
                let ticket = IssuedTicket(couponID: couponID, userID: user, number: index, code: user, issuedAt: Date())
                outcomes[user] = TicketAnswer(outcome: .issued, ticket: TicketRecord(ticket: ticket, redemption: nil))
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

    /// A database whose connections never come (until the wait for one is cancelled).
    struct NoConnection: IssuanceDatabase {
        func withConnection<T: Sendable>(_ body: @Sendable (Never) async throws -> T) async throws -> T {
            try await Task.sleep(for: .seconds(3600))
            throw CancellationError()
        }

        func issue(couponID: Int64, userIDs: [String], on connection: Never) async throws -> [String: TicketAnswer] {}
    }

    /// Issues "first" (held in its transaction), then `users` behind it, then lets it go once they all
    /// wait in the queue (and, for a test of the deadline, once `hold` has passed on the queue's clock
    /// and every request whose deadline it passed has had its answer: the deadline keeper runs on a
    /// task of its own, and a commit let go before it acted would race its 503).
    func issue(
        _ users: [String], through groups: IssuanceQueue<FakeDatabase, TestClock>, database: FakeDatabase,
        clock: TestClock? = nil, hold: Duration = .zero
    ) async -> [(String, Result<TicketAnswer, any Error>)] {
        final class Answered: Sendable { let results = Mutex<[(String, Result<TicketAnswer, any Error>)]>([]) }
        let answered = Answered()
        await withTaskGroup(of: Void.self) { group in
            for user in ["first"] + users {
                group.addTask {
                    let result = await attempt { try await groups.issue(couponID: 1, userID: user) }
                    answered.results.withLock { $0.append((user, result)) }
                }
                if user == "first" { await database.waitForFirstGroup() }
            }
            #expect(await waitUntil { groups.waitingCount(couponID: 1) == users.count }, "the requests never queued")
            if let clock {
                #expect(await waitUntil { clock.sleepers > 0 }, "the first transaction's deadline is not running")
                clock.advance(by: hold)
                if hold >= groups.timeout {
                    #expect(await waitUntil { answered.results.withLock { $0.count } == users.count + 1 }, "not answered at the deadline")
                }
            }
            await database.release()
        }
        return answered.results.withLock { $0 }
    }

    @Test func requestsArrivingDuringATransactionGoTogetherWithinTheCap() async {
        let database = FakeDatabase()
        let groups = IssuanceQueue(database: database, maxGroupSize: 64, maxTransactions: 1, timeout: .seconds(60), clock: TestClock())
        let results = await issue((0..<300).map { "u\($0)" }, through: groups, database: database)
        #expect(results.count == 301)
        #expect(results.allSatisfy { (try? $0.1.get())?.outcome == .issued })
        let sizes = database.groups.withLock { $0.map(\.count) }
        #expect(sizes == [1, 64, 64, 64, 64, 44])
    }

    /// One timer keeps every deadline, however many transactions run: a transaction starts no task
    /// and no timer of its own (a timer per transaction cost two tasks a group, bench/results/cost.md).
    @Test func oneTimerKeepsTheDeadlinesOfEveryTransaction() async {
        let database = FakeDatabase()
        let clock = TestClock()
        let groups = IssuanceQueue(database: database, maxGroupSize: 64, maxTransactions: 1, timeout: .seconds(60), clock: clock)
        let results = await issue((0..<300).map { "u\($0)" }, through: groups, database: database)
        #expect(results.allSatisfy { (try? $0.1.get())?.outcome == .issued })
        #expect(database.groups.withLock { $0.count } == 6)
        #expect(clock.sleeps == 1, "\(clock.sleeps) timers for 6 transactions")
    }

    @Test func theNextTransactionTakesItsGroupOnceItHoldsTheLock() async {
        let database = FakeDatabase()
        let groups = IssuanceQueue(database: database, maxGroupSize: 512, maxTransactions: 2, timeout: .seconds(60), clock: TestClock())
        _ = await issue((0..<100).map { "u\($0)" }, through: groups, database: database)
        // The second transaction started with the second request but waited on the lock: it takes
        // all hundred that arrived meanwhile, not just the one that started it.
        #expect(database.groups.withLock { $0.map(\.count) } == [1, 100])
    }

    @Test func theSameUserTwiceInAGroupGetsOneIssuedAndOneHeld() async {
        let database = FakeDatabase()
        let groups = IssuanceQueue(database: database, maxGroupSize: 64, maxTransactions: 1, timeout: .seconds(60), clock: TestClock())
        let results = await issue(Array(repeating: "twin", count: 5), through: groups, database: database)
        #expect(database.groups.withLock { $0.last?.count } == 5)
        #expect(results.filter { (try? $0.1.get()).map { $0.outcome == .issued && $0.ticket?.ticket.userID == "twin" } == true }.count == 1)
        #expect(results.filter { (try? $0.1.get()).map { $0.outcome == .alreadyIssued && $0.ticket?.ticket.userID == "twin" } == true }.count == 4)
    }

    @Test func aFailedTransactionFailsOnlyItsOwnGroup() async {
        let database = FakeDatabase(failing: { $0.contains("doomed") })
        let groups = IssuanceQueue(database: database, maxGroupSize: 2, maxTransactions: 1, timeout: .seconds(60), clock: TestClock())
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

    /// A database that never gives a connection: every request still gets its answer, at its deadline.
    @Test func aConnectionThatNeverComesStillAnswersEveryone() async {
        let clock = TestClock()
        let groups = IssuanceQueue(database: NoConnection(), maxGroupSize: 4, timeout: .milliseconds(50), clock: clock)
        final class Answers: Sendable { let results = Mutex<[Result<TicketAnswer, any Error>]>([]) }
        let answers = Answers()
        for user in 0..<10 {
            Task {
                let result = await attempt { try await groups.issue(couponID: 1, userID: "u\(user)") }
                answers.results.withLock { $0.append(result) }
            }
        }
        #expect(await waitUntil { groups.waitingCount(couponID: 1) == 10 }, "without a connection nobody is taken")
        #expect(answers.results.withLock { $0.isEmpty }, "nobody is answered before the deadline")
        #expect(await waitUntil {
            clock.advance(by: .milliseconds(50))
            return answers.results.withLock { $0.count } == 10
        })
        #expect(answers.results.withLock { $0.allSatisfy { if case .failure(let error) = $0 { error is DeadlineExceeded } else { false } } })
    }

    /// A database whose transactions never end (until cancelled): what a lock held elsewhere does.
    final class StuckDatabase: IssuanceDatabase {
        struct Connection: Sendable {}
        let clock: TestClock
        let groups = Mutex<[[String]]>([])
        init(clock: TestClock) { self.clock = clock }

        func withConnection<T: Sendable>(_ body: @Sendable (Connection) async throws -> T) async throws -> T {
            try await body(Connection())
        }

        func issue(couponID: Int64, userIDs: [String], on connection: Connection) async throws -> [String: TicketAnswer] {
            groups.withLock { $0.append(userIDs) }
            try await clock.sleep(until: clock.now.advanced(by: .seconds(3600)), tolerance: nil)
            return [:]
        }
    }

    /// Time queued counts: a request that queued behind a stuck transaction, then was taken by the
    /// next one, gets its 503 at its own deadline, not a whole deadline after the next one began (the
    /// bench of a migration under a sale saw waits of twice the deadline).
    @Test func aRequestsDeadlineCountsItsTimeQueued() async {
        let clock = TestClock()
        let database = StuckDatabase(clock: clock)
        let groups = IssuanceQueue(database: database, maxGroupSize: 64, maxTransactions: 1, timeout: .milliseconds(100), clock: clock)
        final class Answers: Sendable { let byUser = Mutex<[String: Result<TicketAnswer, any Error>]>([:]) }
        let answers = Answers()
        func send(_ user: String) {
            Task {
                let result = await attempt { try await groups.issue(couponID: 1, userID: user) }
                answers.byUser.withLock { $0[user] = result }
            }
        }
        send("a")
        #expect(await waitUntil { database.groups.withLock { $0.count } == 1 && clock.sleepers == 2 }, "a's transaction is stuck")
        clock.advance(by: .milliseconds(50))
        send("b")
        #expect(await waitUntil { groups.waitingCount(couponID: 1) == 1 }, "b queued behind it")
        clock.advance(by: .milliseconds(50))
        #expect(await waitUntil { answers.byUser.withLock { $0["a"] != nil } }, "a answered at its deadline")
        #expect(await waitUntil { database.groups.withLock { $0.count } == 2 && clock.sleepers == 2 }, "b's transaction is stuck too")
        clock.advance(by: .milliseconds(50))
        #expect(await waitUntil(.seconds(2)) { answers.byUser.withLock { $0["b"] != nil } }, "b answered 100 ms after it arrived, not 150")
        let b = answers.byUser.withLock { $0["b"] }
        #expect(b.map { if case .failure(let error) = $0 { error is DeadlineExceeded } else { false } } == true)
    }

    @Test func requestsThatWaitedPastTheDeadlineAreAnsweredWithoutTrying() async {
        let database = FakeDatabase()
        let clock = TestClock()
        let groups = IssuanceQueue(database: database, maxGroupSize: 64, maxTransactions: 1, timeout: .milliseconds(100), clock: clock)
        let results = await issue(["late"], through: groups, database: database, clock: clock, hold: .milliseconds(200))
        #expect(results.allSatisfy { if case .failure(let error) = $0.1 { error is DeadlineExceeded } else { false } })
        #expect(database.groups.withLock { $0 } == [["first"]], "the late request never reached the database")
    }
}

func attempt(_ body: () async throws -> TicketAnswer) async -> Result<TicketAnswer, any Error> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
