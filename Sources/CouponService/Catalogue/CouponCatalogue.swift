import Foundation
import Synchronization

/// What this instance knows about coupons without asking the database: each coupon's window, whether
/// it is sold out, and, once nothing more can be issued and someone asked, who holds its tickets.
///
/// It only ever refuses; every ticket is issued by the database, so a stale entry can cost a wrong
/// "sold out" for a moment but never one ticket too many. It is trusted only while the listener is
/// connected and has reloaded it after connecting. Windows are judged on the database's clock
/// (`DatabaseClock`); close to an edge the database decides.
final class CouponCatalogue: Sendable {
    enum ListenerState: String, Sendable {
        case connecting, connected, reconnecting, stopped
    }

    /// What the catalogue can say about one request; nil from `answer` means only issuance can tell.
    enum Answer: Sendable, Equatable {
        /// Certain: no database needed.
        case refused(TicketOutcome)
        /// The refusal, unless this user holds a ticket: one indexed read of it tells.
        case refusedUnlessHolder(TicketOutcome)
        /// The refusal, unless this user holds a ticket, and the coupon's holders are being loaded:
        /// `waitForHolders` and ask again, and the answer comes from memory.
        case refusedOnceHoldersLoad(TicketOutcome)
        /// An id this instance has not heard of: one read of the coupon tells whether it exists (one
        /// created a moment ago whose notification is on its way), never a queue; a "no" is remembered.
        /// Ids are drawn before their creation commits, so one below the highest known may still
        /// appear: a reload that ran between the two does not know it yet.
        case unheardOf
    }

    /// One coupon as last read from the database.
    struct Entry: Sendable, Equatable {
        var quantity: Int
        var issued: Int
        var startsAt: Date?
        var endsAt: Date?
        /// The version of the coupon row this was read from (`xmin`, which every issuance, resize and
        /// window change moves); nil when this instance recorded its own change.
        var revision: Int64?
        /// The holders, once loaded for a final coupon; nil until then.
        var holders: HolderSet?

        init(quantity: Int, issued: Int, startsAt: Date?, endsAt: Date?, revision: Int64? = nil, holders: HolderSet? = nil) {
            self.quantity = quantity
            self.issued = issued
            self.startsAt = startsAt
            self.endsAt = endsAt
            self.revision = revision
            self.holders = holders
        }

        /// This entry with `old`'s holders when both were read from the same version of the row: nothing
        /// was issued or returned in between.
        func keepingHolders(of old: Entry?) -> Entry {
            guard let old, let revision, old.revision == revision else { return self }
            var entry = self
            entry.holders = old.holders
            return entry
        }

        /// The refusal the database would give a user who holds no ticket; nil while it would issue,
        /// or while the clock is too close to an edge of the window to tell.
        func refusal(at clock: DatabaseClock.Reading) -> TicketOutcome? {
            guard clock.uncertainty.isFinite else { return nil }
            let margin = CouponCatalogue.edgeMargin + clock.uncertainty
            switch SaleWindow.position(of: clock.now, startsAt: startsAt, endsAt: endsAt, margin: margin) {
            case .before: return .notStarted
            case .after: return .ended
            case .nearAnEdge: return nil
            case .open: return issued >= quantity ? .soldOut : nil
            }
        }
    }

    /// Within this much (plus the clock's uncertainty) of a window's edge, the database decides.
    static let edgeMargin: TimeInterval = 0.25
    /// Ids found missing are remembered in two generations of at most this many each: when the newer
    /// is full the older is dropped, so probing random ids neither grows memory nor forgets them all.
    static let maxMissing = 50_000

    private struct Stored {
        var entry: Entry
        /// Moves on every change, so a holder load that raced a newer read is dropped.
        var generation: UInt64
        /// When the holders were last asked, for evicting the least recently asked.
        var lastAsked: UInt64 = 0
    }

    private struct State {
        var listener = ListenerState.connecting
        var coupons: [Int64: Stored] = [:]
        var missing: Set<Int64> = []
        var missingBefore: Set<Int64> = []
        var holdersWanted: Set<Int64> = []
        /// Coupons whose holders the listener took to load and has not installed yet.
        var holdersLoading: Set<Int64> = []
        /// Requests waiting for a coupon's holders, by coupon and waiter.
        var holderWaiters: [Int64: [UInt64: CheckedContinuation<Void, Never>]] = [:]
        var holderHashes = 0
        var ticks: UInt64 = 0

        mutating func tick() -> UInt64 {
            ticks += 1
            return ticks
        }

        /// The waiters for a coupon's holders (all coupons' when nil), let go: its load ended, its
        /// entry changed, or the catalogue is no longer trusted. Resumed by the caller, outside the lock.
        mutating func releaseHolderWaiters(of couponID: Int64? = nil) -> [CheckedContinuation<Void, Never>] {
            guard let couponID else {
                defer { holderWaiters.removeAll() }
                return holderWaiters.values.flatMap(\.values)
            }
            return holderWaiters.removeValue(forKey: couponID).map { Array($0.values) } ?? []
        }
    }
    private let state = Mutex(State())
    /// Memory for holders is capped at 8 bytes times this; beyond it the least recently asked coupon's
    /// holders are dropped (and read again if it is asked again).
    let maxHolderHashes: Int
    let clock: DatabaseClock

    init(clock: DatabaseClock = DatabaseClock(), maxHolderHashes: Int = 4_000_000) {
        self.clock = clock
        self.maxHolderHashes = maxHolderHashes
    }

    var listenerState: ListenerState { state.withLock { $0.listener } }

    /// Hashes of holders held, over all coupons.
    var holderHashCount: Int { state.withLock { $0.holderHashes } }

    /// Requests waiting for a coupon's holders, over all coupons.
    var holderWaiterCount: Int { state.withLock { $0.holderWaiters.values.reduce(0) { $0 + $1.count } } }

    /// The answer from memory (or from one read of the user's ticket), or nil when only issuance can answer.
    func answer(couponID: Int64, userID: String) -> Answer? {
        answer(couponID: couponID, userID: userID, at: clock.reading())
    }

    func answer(couponID: Int64, userID: String, at clock: DatabaseClock.Reading) -> Answer? {
        state.withLock { state in
            guard state.listener == .connected else { return nil }
            guard let stored = state.coupons[couponID] else {
                let missing = state.missing.contains(couponID) || state.missingBefore.contains(couponID)
                return missing ? .refused(.couponNotFound) : .unheardOf
            }
            let entry = stored.entry
            guard let refusal = entry.refusal(at: clock) else { return nil }
            // Nobody is issued a ticket before the sale opens, and moving the window notifies. Holders
            // are only kept for coupons that stay final (sold out, ended): a sale that has not started
            // opens without a notification, so a list read now would go stale when it does.
            if refusal == .notStarted { return entry.issued == 0 ? .refused(refusal) : .refusedUnlessHolder(refusal) }
            guard let holders = entry.holders else {
                // Too many to keep: every holder check reads the database.
                guard entry.issued <= maxHolderHashes else { return .refusedUnlessHolder(refusal) }
                state.holdersWanted.insert(couponID)
                return .refusedOnceHoldersLoad(refusal)
            }
            let now = state.tick()
            state.coupons[couponID]?.lastAsked = now
            return holders.mayContain(userID) ? .refusedUnlessHolder(refusal) : .refused(refusal)
        }
    }

    /// Coupons a request could be issued a ticket of now (window open, or too close to an edge to tell,
    /// and not sold out), at most `limit`; none while the catalogue is not trusted.
    func openCouponIDs(limit: Int) -> [Int64] {
        let now = clock.reading()
        return state.withLock { state in
            guard state.listener == .connected else { return [] }
            var open: [Int64] = []
            for (id, stored) in state.coupons where open.count < limit && stored.entry.refusal(at: now) == nil {
                open.append(id)
            }
            return open
        }
    }

    /// The database said this coupon does not exist.
    func learnMissing(couponID: Int64) {
        state.withLock { state in
            // A creation the listener already saw wins over a lookup that raced it.
            guard state.listener == .connected, state.coupons[couponID] == nil else { return }
            if state.missing.count >= Self.maxMissing {
                state.missingBefore = state.missing
                state.missing = []
            }
            state.missing.insert(couponID)
        }
    }

    /// This instance just created or resized the coupon: no need to wait for its notification.
    func record(_ coupon: Coupon) {
        update(
            couponID: coupon.id,
            with: Entry(quantity: coupon.quantity, issued: coupon.issued, startsAt: coupon.startsAt, endsAt: coupon.endsAt))
    }

    // MARK: Kept current by the listener

    /// Everything, as read right after (re)connecting: from now on the catalogue is trusted. Holders
    /// are kept for coupons whose row has not changed since they were loaded.
    func replaceAll(with entries: [Int64: Entry]) {
        state.withLock { state in
            var coupons: [Int64: Stored] = [:]
            coupons.reserveCapacity(entries.count)
            var holderHashes = 0
            for (id, read) in entries {
                let old = state.coupons[id]
                let entry = read.keepingHolders(of: old?.entry)
                holderHashes += entry.holders?.count ?? 0
                let generation = state.tick()
                coupons[id] = Stored(entry: entry, generation: generation, lastAsked: old?.lastAsked ?? 0)
            }
            state.coupons = coupons
            state.holderHashes = holderHashes
            state.missing.removeAll()
            state.missingBefore.removeAll()
            state.holdersWanted.removeAll()
            state.holdersLoading.removeAll()
            state.listener = .connected
            return state.releaseHolderWaiters()
        }.forEach { $0.resume() }
    }

    /// One coupon after a notification (nil: it no longer exists). A coupon that just sold out will
    /// be asked by everyone who missed it, so its holders are wanted at once.
    func update(couponID: Int64, with entry: Entry?) {
        state.withLock { state in
            let old = state.coupons.removeValue(forKey: couponID)
            state.holderHashes -= old?.entry.holders?.count ?? 0
            state.missing.remove(couponID)
            state.missingBefore.remove(couponID)
            state.holdersWanted.remove(couponID)
            state.holdersLoading.remove(couponID)
            // Whoever waited for the holders asks again (a coupon raised, say, is open again).
            let waiters = state.releaseHolderWaiters(of: couponID)
            guard let entry = entry?.keepingHolders(of: old?.entry) else { return waiters }
            state.holderHashes += entry.holders?.count ?? 0
            let generation = state.tick()
            state.coupons[couponID] = Stored(entry: entry, generation: generation, lastAsked: old?.lastAsked ?? 0)
            if entry.holders == nil, entry.issued >= entry.quantity, entry.issued <= maxHolderHashes {
                state.holdersWanted.insert(couponID)
            }
            return waiters
        }.forEach { $0.resume() }
    }

    /// Coupons whose holders are wanted, each with the generation of its entry then.
    func takeHoldersWanted() -> [(couponID: Int64, generation: UInt64)] {
        state.withLock { state in
            let taken = state.holdersWanted.compactMap { id in state.coupons[id].map { (couponID: id, generation: $0.generation) } }
            state.holdersLoading.formUnion(taken.map(\.couponID))
            state.holdersWanted.removeAll()
            return taken
        }
    }

    /// A coupon read again together with its holders, once no issuer could still add one. Kept only if
    /// nothing newer arrived since the load was asked for (`generation`); then the least recently
    /// asked holders make room if needed.
    @discardableResult
    func install(couponID: Int64, loaded entry: Entry, ifStillAt generation: UInt64) -> Bool {
        let (installed, waiters) = state.withLock { state in
            state.holdersLoading.remove(couponID)
            let waiters = state.releaseHolderWaiters(of: couponID)
            guard let old = state.coupons[couponID], old.generation == generation else { return (false, waiters) }
            state.holderHashes += (entry.holders?.count ?? 0) - (old.entry.holders?.count ?? 0)
            let now = state.tick()
            state.coupons[couponID] = Stored(entry: entry, generation: now, lastAsked: now)
            while state.holderHashes > maxHolderHashes,
                let (victim, stored) = state.coupons.lazy.filter({ $0.value.entry.holders != nil })
                    .min(by: { $0.value.lastAsked < $1.value.lastAsked })
            {
                state.holderHashes -= stored.entry.holders?.count ?? 0
                state.coupons[victim]?.entry.holders = nil
            }
            return (true, waiters)
        }
        waiters.forEach { $0.resume() }
        return installed
    }

    /// A coupon's holders could not be loaded: whoever waited for them reads the user's ticket instead.
    func holdersNotLoaded(couponID: Int64) {
        state.withLock { state in
            state.holdersLoading.remove(couponID)
            return state.releaseHolderWaiters(of: couponID)
        }.forEach { $0.resume() }
    }

    /// Waits, at most `limit`, until the coupon's holders are loaded, or the load ends otherwise (it
    /// failed, the coupon changed, the catalogue is no longer trusted); then `answer` again. Everyone
    /// who asks while the holders load waits for that one load, where each would otherwise read the
    /// database (bench/results/sellout.md).
    func waitForHolders(couponID: Int64, atMost limit: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.holdersSettled(couponID: couponID) }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
    }

    private func holdersSettled(couponID: Int64) async {
        let waiter = state.withLock { $0.tick() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waits = state.withLock { state in
                    // Cancelled before it waited (the handler below found nothing to let go), or nothing to
                    // wait for: the holders are there, or no load is to come (the coupon open again, say).
                    guard !Task.isCancelled, state.listener == .connected, let stored = state.coupons[couponID],
                        stored.entry.holders == nil,
                        state.holdersWanted.contains(couponID) || state.holdersLoading.contains(couponID)
                    else { return false }
                    state.holderWaiters[couponID, default: [:]][waiter] = continuation
                    return true
                }
                if !waits { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.holderWaiters[couponID]?.removeValue(forKey: waiter) }?.resume()
        }
    }

    /// The listener lost its connection: notifications may be missed from here on.
    func distrust(_ listener: ListenerState) {
        state.withLock { state in
            state.listener = listener
            return state.releaseHolderWaiters()
        }.forEach { $0.resume() }
    }
}

/// The sale window rule, in one place: open from `startsAt` (inclusive) until `endsAt` (exclusive),
/// either end optional. `issue_tickets` applies the same rule with the database's clock under the
/// coupon's lock; `Coupon.status` and the catalogue apply it here.
enum SaleWindow {
    enum Position: Equatable {
        case before, open, after
        /// Within `margin` of an edge: too close for a clock that may be off by that much to tell.
        case nearAnEdge
    }

    static func position(of now: Date, startsAt: Date?, endsAt: Date?, margin: TimeInterval = 0) -> Position {
        if let startsAt {
            if now < startsAt.addingTimeInterval(-margin) { return .before }
            if now < startsAt.addingTimeInterval(margin) { return margin > 0 ? .nearAnEdge : .open }
        }
        if let endsAt {
            if now >= endsAt.addingTimeInterval(margin) { return .after }
            if now >= endsAt.addingTimeInterval(-margin) { return .nearAnEdge }
        }
        return .open
    }
}

/// The database's time as this instance best knows it: the local clock plus an offset measured
/// against PostgreSQL's `clock_timestamp()`.
///
/// Sale windows are the database's: `issue_tickets` judges them with its own clock. An instance whose
/// clock runs behind or ahead would otherwise refuse, from memory, a sale the database has opened.
final class DatabaseClock: Sendable {
    /// What the clock says now, and how far from the database's time that may be.
    struct Reading: Sendable, Equatable {
        var now: Date
        /// Half the round trip of the measurement behind the offset (infinite before the first one).
        var uncertainty: TimeInterval
    }

    /// A measurement slower than this round trip says too little about when the database read its
    /// clock, so it is not used.
    static let maxRoundTrip: TimeInterval = 0.1

    private struct Measurement {
        var offset: TimeInterval = 0
        var uncertainty: TimeInterval = .infinity
    }
    private let measurement = Mutex(Measurement())
    private let localClock: @Sendable () -> Date

    /// `localClock` is this machine's wall clock; tests pass a skewed one.
    init(localClock: @escaping @Sendable () -> Date = { Date() }) {
        self.localClock = localClock
    }

    func reading() -> Reading {
        let measured = measurement.withLock { $0 }
        return Reading(now: localClock().addingTimeInterval(measured.offset), uncertainty: measured.uncertainty)
    }

    /// Database time minus local time, in seconds; nil before the first usable measurement.
    var offset: TimeInterval? {
        measurement.withLock { $0.uncertainty.isFinite ? $0.offset : nil }
    }

    /// Asks `databaseTime` for the database's clock and keeps the offset if the round trip was short.
    /// Returns whether it was kept.
    @discardableResult
    func measure(_ databaseTime: () async throws -> Date) async throws -> Bool {
        let sent = localClock()
        let database = try await databaseTime()
        let received = localClock()
        let roundTrip = received.timeIntervalSince(sent)
        guard roundTrip >= 0, roundTrip <= Self.maxRoundTrip else { return false }
        let midpoint = sent.addingTimeInterval(roundTrip / 2)
        measurement.withLock {
            $0 = Measurement(offset: database.timeIntervalSince(midpoint), uncertainty: roundTrip / 2)
        }
        return true
    }
}
