@testable import CouponService
import CouponTestSupport
import Testing

@Suite struct SQLScriptTests {
    @Test func splitsOnTopLevelSemicolons() {
        #expect(SQLScript.statements(in: "CREATE TABLE a (x int);\n\nINSERT INTO a VALUES (1) ;") == [
            "CREATE TABLE a (x int)", "INSERT INTO a VALUES (1)",
        ])
    }

    @Test func keepsSemicolonsInsideQuotesCommentsAndBodies() throws {
        let sql = """
            -- a comment; not a statement
            INSERT INTO t VALUES ('a;b', 'it''s; fine', "odd;name");
            /* block; /* nested; */ still comment; */
            CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;
            CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN $1; END; $body$;
            SELECT $1::int;
            """
        let statements = SQLScript.statements(in: sql)
        try #require(statements.count == 4)
        #expect(statements[0].hasSuffix(#"VALUES ('a;b', 'it''s; fine', "odd;name")"#))
        // A comment travels with the statement after it.
        #expect(statements[1].hasPrefix("/* block; /* nested; */ still comment; */"))
        #expect(statements[1].hasSuffix("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$"))
        #expect(statements[2].hasSuffix("$body$ BEGIN RETURN $1; END; $body$"))
        #expect(statements[3] == "SELECT $1::int")
    }

    @Test func dropsEmptyAndCommentOnlyStatements() {
        #expect(SQLScript.statements(in: " ;; -- trailing comment\n/* only */ ;").isEmpty)
    }
}
