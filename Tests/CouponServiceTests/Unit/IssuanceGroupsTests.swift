@testable import CouponService
import Foundation
import Synchronization
import Testing

/// The grouping logic alone, with a stand-in for the database that records the groups it gets.
@Suite struct IssuanceGroupsTests {
    /// Holds the first transaction until released, so the requests behind it pile up.
    final class FakeDatabase: Sendable {
        let groups = Mutex<[[String]]>([])
        let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let failing: @Sendable ([String]) -> Bool

        init(failing: @escaping @Sendable ([String]) -> Bool = { _ in false }) { self.failing = failing }

        func issue(couponID: Int64, userIDs: [String]) async throws -> [String: IssueOutcome] {
            let first = groups.withLock { groups in
                groups.append(userIDs)
                return groups.count == 1
            }
            if first { await withCheckedContinuation { continuation in gate.withLock { $0 = continuation } } }
            if failing(userIDs) { throw DatabaseDown() }
            var outcomes: [String: IssueOutcome] = [:]
            for (index, user) in Set(userIDs).sorted().enumerated() {
                outcomes[user] = .issued(IssuedTicket(couponID: couponID, userID: user, number: index, code: user, issuedAt: Date()))
            }
            return outcomes
        }

        func release() async {
            while true {
                if let continuation = gate.withLock({ $0.take() }) { return continuation.resume() }
                await Task.yield()
            }
        }
    }

    struct DatabaseDown: Error {}

    @Test func requestsArrivingDuringATransactionGoTogetherWithinTheCap() async {
        let database = FakeDatabase()
        let groups = IssuanceGroups(maxGroupSize: 64, maxInFlight: 1, timeout: .seconds(60), issue: database.issue)
        // Queue 300 requests behind a held first transaction.
        let results = await withTaskGroup(of: Result<IssueOutcome, any Error>.self) { group in
            group.addTask { await attempt { try await groups.issue(couponID: 1, userID: "first") } }
            while database.groups.withLock({ $0.count }) == 0 { await Task.yield() }
            for user in 0..<300 { group.addTask { await attempt { try await groups.issue(couponID: 1, userID: "u\(user)") } } }
            try? await Task.sleep(for: .milliseconds(200))
            await database.release()
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 301)
        #expect(results.allSatisfy { if case .success(.issued) = $0 { true } else { false } })
        let sizes = database.groups.withLock { $0.map(\.count) }
        #expect(sizes.first == 1)
        #expect(sizes.dropFirst().allSatisfy { $0 <= 64 })
        #expect(sizes.dropFirst().reduce(0, +) == 300)
        #expect(sizes.count == 1 + 5, "300 waiting requests in groups of at most 64: \(sizes)")
    }

    @Test func theSameUserTwiceInAGroupGetsOneIssuedAndOneHeld() async {
        let database = FakeDatabase()
        let groups = IssuanceGroups(maxGroupSize: 64, maxInFlight: 1, timeout: .seconds(60), issue: database.issue)
        let results = await withTaskGroup(of: Result<IssueOutcome, any Error>.self) { group in
            group.addTask { await attempt { try await groups.issue(couponID: 1, userID: "first") } }
            while database.groups.withLock({ $0.count }) == 0 { await Task.yield() }
            for _ in 0..<5 { group.addTask { await attempt { try await groups.issue(couponID: 1, userID: "twin") } } }
            try? await Task.sleep(for: .milliseconds(100))
            await database.release()
            return await group.reduce(into: []) { $0.append($1) }
        }
        let twins = database.groups.withLock { $0.last }
        #expect(twins?.count == 5)
        #expect(results.filter { if case .success(.issued(let t)) = $0 { t.userID == "twin" } else { false } }.count == 1)
        #expect(results.filter { if case .success(.held(let t)) = $0 { t.userID == "twin" } else { false } }.count == 4)
    }

    @Test func aFailedTransactionFailsOnlyItsOwnGroup() async {
        let database = FakeDatabase(failing: { $0.contains("doomed") })
        let groups = IssuanceGroups(maxGroupSize: 2, maxInFlight: 1, timeout: .seconds(60), issue: database.issue)
        let results = await withTaskGroup(of: (String, Result<IssueOutcome, any Error>).self) { group in
            group.addTask { ("first", await attempt { try await groups.issue(couponID: 1, userID: "first") }) }
            while database.groups.withLock({ $0.count }) == 0 { await Task.yield() }
            for user in ["doomed", "a", "b", "c"] {
                group.addTask { (user, await attempt { try await groups.issue(couponID: 1, userID: user) }) }
                try? await Task.sleep(for: .milliseconds(20))
            }
            await database.release()
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        let failedGroup = database.groups.withLock { $0.first { $0.contains("doomed") } } ?? []
        for (user, result) in results {
            if failedGroup.contains(user) {
                #expect(throws: DatabaseDown.self) { try result.get() }
            } else {
                #expect((try? result.get()) != nil, "\(user) was not in the failed group")
            }
        }
        #expect(failedGroup.count == 2)
    }
}

func attempt(_ body: () async throws -> IssueOutcome) async -> Result<IssueOutcome, any Error> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
