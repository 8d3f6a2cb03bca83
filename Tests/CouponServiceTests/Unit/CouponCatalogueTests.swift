@testable import CouponService
import Foundation
import Testing

@Suite struct CouponCatalogueTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func ticket(_ user: String) -> IssuedTicket {
        IssuedTicket(couponID: 1, userID: user, number: 1, code: "c-\(user)", issuedAt: now)
    }

    func trusted(_ entries: [Int64: CouponCatalogue.Entry]) -> CouponCatalogue {
        let catalogue = CouponCatalogue()
        catalogue.replaceAll(with: entries)
        return catalogue
    }

    @Test func answersNothingUntilTheListenerHasLoadedIt() {
        let catalogue = CouponCatalogue()
        catalogue.update(couponID: 1, with: .init(quantity: 1, issued: 1, startsAt: nil, endsAt: nil, holders: [:]))
        #expect(catalogue.answer(couponID: 1, userID: "u", now: now) == nil)
        catalogue.replaceAll(with: [1: .init(quantity: 1, issued: 1, startsAt: nil, endsAt: nil, holders: [:])])
        #expect(catalogue.answer(couponID: 1, userID: "u", now: now) == .soldOut)
        catalogue.distrust(.reconnecting)
        #expect(catalogue.answer(couponID: 1, userID: "u", now: now) == nil)
    }

    @Test func soldOutRefusesAllButTheHolders() {
        let catalogue = trusted([1: .init(quantity: 1, issued: 1, startsAt: nil, endsAt: nil, holders: ["w": ticket("w")])])
        #expect(catalogue.answer(couponID: 1, userID: "w", now: now) == .held(ticket("w")))
        #expect(catalogue.answer(couponID: 1, userID: "x", now: now) == .soldOut)
    }

    @Test func openCouponsGoToTheDatabase() {
        let catalogue = trusted([1: .init(quantity: 2, issued: 1, startsAt: nil, endsAt: nil)])
        #expect(catalogue.answer(couponID: 1, userID: "x", now: now) == nil)
    }

    @Test func theWindowIsReadFromTheClock() {
        let catalogue = trusted([
            1: .init(quantity: 5, issued: 0, startsAt: now.addingTimeInterval(10), endsAt: nil),
            2: .init(quantity: 5, issued: 0, startsAt: nil, endsAt: now.addingTimeInterval(-1)),
        ])
        #expect(catalogue.answer(couponID: 1, userID: "x", now: now) == .notStarted)
        #expect(catalogue.answer(couponID: 1, userID: "x", now: now.addingTimeInterval(10)) == nil, "opens on time")
        #expect(catalogue.answer(couponID: 2, userID: "x", now: now) == .ended)
    }

    @Test func anEndedSaleWithHoldersWaitsForTheirList() {
        let catalogue = trusted([1: .init(quantity: 5, issued: 2, startsAt: nil, endsAt: now)])
        #expect(catalogue.answer(couponID: 1, userID: "x", now: now) == nil)
        #expect(catalogue.takeHoldersWanted() == [1])
        catalogue.update(couponID: 1, with: .init(quantity: 5, issued: 2, startsAt: nil, endsAt: now, holders: ["w": ticket("w")]))
        #expect(catalogue.answer(couponID: 1, userID: "x", now: now) == .ended)
        #expect(catalogue.answer(couponID: 1, userID: "w", now: now) == .held(ticket("w")))
    }

    @Test func missingCouponsAreRememberedUntilCreated() {
        let catalogue = trusted([:])
        #expect(catalogue.answer(couponID: 7, userID: "x", now: now) == nil)
        catalogue.learnMissing(couponID: 7)
        #expect(catalogue.answer(couponID: 7, userID: "x", now: now) == .couponNotFound)
        catalogue.update(couponID: 7, with: .init(quantity: 1, issued: 0, startsAt: nil, endsAt: nil))
        #expect(catalogue.answer(couponID: 7, userID: "x", now: now) == nil)
        catalogue.learnMissing(couponID: 7)
        #expect(catalogue.answer(couponID: 7, userID: "x", now: now) == nil, "a lookup that raced the creation loses")
    }
}
