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
        #expect(url.hosts == [.init(name: "db.example", port: 6432)])
    }

    @Test func theDefaultsAreLibpqs() throws {
        let url = try DatabaseURL("postgresql://db")
        #expect(url.sslMode == .prefer)
        #expect(url.hosts == [.init(name: "db", port: 5432)])
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

    /// Found by hand: the form every PostgreSQL client reads was refused at start.
    @Test func severalHostsAreParsedAsLibpqReadsThem() throws {
        let url = try DatabaseURL("postgres://u:p@h1:5432,h2,[::1]:6543/coupons?target_session_attrs=read-write&sslmode=disable")
        #expect(url.hosts == [.init(name: "h1", port: 5432), .init(name: "h2", port: 5432), .init(name: "::1", port: 6543)])
        #expect(url.targetSessionAttrs == .readWrite)
        #expect(url.database == "coupons" && url.username == "u" && url.password == "p" && url.sslMode == .disable)
        #expect(url.on(url.hosts[1]).hosts == [.init(name: "h2", port: 5432)])
        #expect(try DatabaseURL("postgres://db/c?target_session_attrs=primary").targetSessionAttrs == .primary)
        #expect(try DatabaseURL("postgres://db/c").targetSessionAttrs == .any, "libpq's default")
        for bad in ["postgres://h1,/c", "postgres://h1:0/c", "postgres://h1:99999/c", "postgres://h1:x/c",
                    "postgres://db/c?target_session_attrs=standby", "postgres://db/c?target_session_attrs=read-only"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try DatabaseURL(bad) }
        }
    }
}

