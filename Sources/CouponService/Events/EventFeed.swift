import Foundation
import Logging
import PostgresNIO
import Synchronization

/// How far the feed may be read: the settled position, below which no event can still appear.
///
/// An event's position is taken inside its transaction, so a later position can commit before an
/// earlier one (two tickets sold on two connections). A reader that served the later one and moved
/// its cursor past it would never see the earlier. So the feed serves positions up to the settled
/// one alone: `outbox_horizon()` (migrations/functions/outbox.sql) names the last position taken and,
/// in a later snapshot, this database's transactions running; that position is settled once all of
/// those have ended. With none running it is settled at once; under a sale, at a later read (a few ms).
/// Readers sleep on the database's `EventBell` between reads.
final class EventFeed: Sendable {
    let database: Database
    let metrics: CouponMetrics
    private let state = Mutex(State())

    private struct State {
        var settled: Int64 = 0
        /// Positions taken, each waiting for the transactions that were running after it to end.
        var candidates: [(position: Int64, running: Set<Int64>)] = []
    }

    init(database: Database, metrics: CouponMetrics) {
        self.database = database
        self.metrics = metrics
    }

    var bell: EventBell { database.bell }

    /// The settled position as last read: safe to read up to without asking the database again.
    var settled: Int64 { state.withLock { $0.settled } }

    /// True while a position is taken but not yet settled: worth reading again soon.
    var unsettled: Bool { state.withLock { !$0.candidates.isEmpty } }

    /// Reads the horizon once and settles what it can; the settled position.
    @discardableResult
    func advance() async throws -> Int64 {
        let horizons = try await database.rows("SELECT last_position, running FROM outbox_horizon()") {
            try $0.decode((Int64?, [Int64]?).self)
        }
        guard let (lastTaken, runningNow) = horizons.first else { return state.withLock { $0.settled } }
        guard let last = lastTaken, let runningNow else { throw EventFeedError.distributed }
        let running = Set(runningNow)
        let settled = state.withLock { state in
            state.candidates.removeAll { candidate in
                guard candidate.running.isDisjoint(with: running) else { return false }
                state.settled = max(state.settled, candidate.position)
                return true
            }
            if running.isEmpty {
                // Nothing of this database ran at the snapshot: every position taken before it is settled.
                state.settled = max(state.settled, last)
                state.candidates = []
            } else if last > max(state.settled, state.candidates.last?.position ?? 0) {
                // A newer candidate waits for more; past a few, the newest replaces the last.
                if state.candidates.count == 8 { state.candidates.removeLast() }
                state.candidates.append((last, running))
            }
            return state.settled
        }
        metrics.feedPosition.record(settled)
        return settled
    }

    /// Sleeps until events may have come: a wake-up of the bell after `wakeUps`, or `idle`; while a
    /// position waits to settle, 20 ms at most.
    func sleep(since wakeUps: Int, upTo idle: Duration) async {
        await bell.sleep(since: wakeUps, upTo: unsettled ? min(idle, .milliseconds(20)) : idle)
    }
}

enum EventFeedError: Error {
    /// The database is a Citus cluster: its workers number their coupons' events apart.
    case distributed
}

/// Rung when events commit: wakes this instance's readers of the feed at once, and the other
/// instances' through `NOTIFY outbox` (their catalogue listener calls `wake()`), at most every
/// `notifyInterval`. Never per ticket, never inside the sale's transactions: a NOTIFY serializes the
/// commits of the transactions that send it.
final class EventBell: Sendable {
    static let channel = "outbox"

    let notifyInterval: Duration
    private let waiters = Waiters()
    private let notifyScheduled = Mutex(false)

    init(notifyInterval: Duration = .milliseconds(20)) { self.notifyInterval = notifyInterval }

    /// This instance committed events: wakes its readers, and has `notify` tell the others soon.
    func ring(notify: @escaping @Sendable () async -> Void) {
        waiters.wakeAll()
        let send = notifyScheduled.withLock { scheduled in
            defer { scheduled = true }
            return !scheduled
        }
        guard send else { return }
        Task { [self] in
            try? await Task.sleep(for: notifyInterval)
            notifyScheduled.withLock { $0 = false }
            await notify()
        }
    }

    /// Another instance committed events (its NOTIFY), or the listener reconnected.
    func wake() { waiters.wakeAll() }

    /// The count of wake-ups so far: read it before a read of the feed, and sleep `since` it, so a
    /// wake-up between the two is not missed.
    var wakeUps: Int { waiters.wakeUps }

    /// Sleeps until a wake-up after `wakeUps` (at once if one came already), or for `timeout`; at once
    /// when cancelled.
    func sleep(since wakeUps: Int, upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waiters.wait(since: wakeUps) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }
}

/// Tasks asleep until the next wake-up.
private final class Waiters: Sendable {
    private struct State {
        var wakeUps = 0
        var next = 0
        var continuations: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    var wakeUps: Int { state.withLock { $0.wakeUps } }

    func wait(since wakeUps: Int) async {
        let id = state.withLock { state in
            state.next += 1
            return state.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let asleep = state.withLock { state in
                    guard !Task.isCancelled, state.wakeUps == wakeUps else { return false }
                    state.continuations[id] = continuation
                    return true
                }
                if !asleep { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.continuations.removeValue(forKey: id) }?.resume()
        }
    }

    func wakeAll() {
        let woken = state.withLock { state in
            state.wakeUps += 1
            defer { state.continuations = [:] }
            return Array(state.continuations.values)
        }
        for continuation in woken { continuation.resume() }
    }
}
