@testable import CouponService
import Testing

/// How `DATABASE_URL` is read, as libpq reads it (found by hand: user and password were decoded twice,
/// unknown parameters ignored, and TLS off by default).
@Suite struct DatabaseURLTests {
    @Test func eachPartIsPercentDecodedOnce() throws {
        let url = try DatabaseURL("postgres://a%2Bb:%2541%40x@db.example:6432/sale%2Dnight")
        #expect(url.username == "a+b")
        #expect(url.password == "%41@x")
        #expect(url.database == "sale-night")
        #expect(url.host == "db.example")
        #expect(url.port == 6432)
    }

    @Test func theDefaultsAreLibpqs() throws {
        let url = try DatabaseURL("postgresql://db")
        #expect(url.sslMode == .prefer)
        #expect(url.port == 5432)
        #expect(url.username == "postgres")
        #expect(url.password == nil)
        #expect(url.database == nil)
    }

    @Test(arguments: [
        "postgres://u:p%@db/coupons",  // a bare %
        "postgres://u:p%zz@db/coupons",
        "postgres://u:p%ff@db/coupons",  // not UTF-8
        "postgres://db/coupons?ssl=true",  // not libpq's parameter: refused, not ignored
        "postgres://db/coupons?sslmode=require&sslmode=disable",
        "postgres://db/coupons?sslmode=verify",
        "mysql://db/coupons",
        "postgres:///coupons",
    ])
    func whatLibpqWouldNotReadIsRefused(_ text: String) {
        #expect(throws: ConfigurationError.self) { try DatabaseURL(text) }
    }
}
