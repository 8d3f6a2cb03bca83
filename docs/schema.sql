-- schema.sh: the schema after every migration, written by scripts/schema.sh (pg_dump --schema-only).
-- schema.sh: do not edit; add a migration, then run scripts/schema.sh.
--
-- PostgreSQL database dump
--



SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: ticket_answer; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.ticket_answer AS (
	outcome text,
	coupon_id bigint,
	number integer,
	code text,
	user_id text,
	issued_at timestamp with time zone,
	redeemed_at timestamp with time zone,
	order_id text,
	hold_until timestamp with time zone,
	hold_lapsed boolean
);


--
-- Name: add_coupon_tickets(bigint, bigint, bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.add_coupon_tickets(p_coupon_id bigint, p_first_number bigint, p_last_number bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_shard text;
BEGIN
    INSERT INTO coupon_tickets (coupon_id, number, code)
    SELECT p_coupon_id, n, new_ticket_code(p_coupon_id)
    FROM generate_series(p_first_number, p_last_number) AS n;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        v_shard := shard_name('coupon_tickets'::regclass,
                              get_shard_id_for_distribution_column('coupon_tickets', p_coupon_id));
        IF to_regclass(v_shard) IS NOT NULL THEN
            EXECUTE format('ANALYZE %s', v_shard);
        END IF;
    ELSIF p_first_number = 1 THEN
        ANALYZE coupon_tickets (coupon_id, number, issued_at, user_id);
    END IF;
END;
$$;


--
-- Name: audit_coupon(bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.audit_coupon(p_coupon_id bigint) RETURNS TABLE(quantity integer, issued_count integer, ticket_rows integer, held integer, users integer, violations text[])
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN QUERY
        SELECT a.quantity, a.issued_count, a.ticket_rows, a.held, a.users,
               array_remove(ARRAY[
                   CASE WHEN a.held > a.quantity THEN format('%s tickets held for %s', a.held, a.quantity) END,
                   CASE WHEN a.issued_count <> a.held THEN format('counter %s but %s held', a.issued_count, a.held) END,
                   CASE WHEN a.users <> a.held THEN format('%s tickets but %s users', a.held, a.users) END,
                   CASE WHEN a.ticket_rows <> a.quantity THEN format('%s ticket rows for %s', a.ticket_rows, a.quantity) END
               ], NULL)
        FROM (
            SELECT c.quantity, c.issued_count, count(t.number)::int AS ticket_rows, count(t.user_id)::int AS held,
                   count(DISTINCT t.user_id)::int AS users
            FROM coupons c
            LEFT JOIN coupon_tickets t ON t.coupon_id = c.id
            WHERE c.id = p_coupon_id
            GROUP BY c.id
        ) AS a;
END;
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: coupons; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.coupons (
    id bigint NOT NULL,
    name text NOT NULL,
    quantity integer NOT NULL,
    issued_count integer DEFAULT 0 NOT NULL,
    starts_at timestamp with time zone,
    ends_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    issued_through integer DEFAULT 0 NOT NULL,
    redeem_until timestamp with time zone,
    CONSTRAINT coupons_issued_within_quantity CHECK (((0 <= issued_count) AND (issued_count <= quantity))),
    CONSTRAINT coupons_window_ordered CHECK (((starts_at IS NULL) OR (ends_at IS NULL) OR (starts_at < ends_at)))
);


--
-- Name: close_sale(bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.close_sale(p_coupon_id bigint) RETURNS SETOF public.coupons
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_now timestamptz;
BEGIN
    PERFORM 1 FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_now := clock_timestamp();
    RETURN QUERY
        UPDATE coupons AS c
        SET ends_at = CASE WHEN c.ends_at <= v_now THEN c.ends_at ELSE v_now END,
            starts_at = CASE WHEN c.starts_at > v_now THEN NULL ELSE c.starts_at END
        WHERE c.id = p_coupon_id
        RETURNING c.*;
END;
$$;


--
-- Name: issue_tickets(bigint, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.issue_tickets(p_coupon_id bigint, p_user_ids text[]) RETURNS SETOF public.ticket_answer
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET jit TO 'off'
    AS $$
DECLARE
    v_coupon  coupons%ROWTYPE;
    v_refusal text;
    v_after   int;
    v_now     timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'issue_tickets needs READ COMMITTED, not %', current_setting('transaction_isolation');
    END IF;

    -- Every issuer of the coupon queues here; each later statement takes a new snapshot, so it sees
    -- every ticket committed before this lock was granted.
    SELECT * INTO v_coupon FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    -- The window is judged now that the lock is held, not when the transaction began (see the header).
    v_now := clock_timestamp();
    IF NOT FOUND THEN
        RETURN QUERY SELECT DISTINCT 'coupon_not_found', p_coupon_id, NULL::int, NULL::text, r.id, NULL::timestamptz,
                                     NULL::timestamptz, NULL::text, NULL::timestamptz, false
                     FROM unnest(p_user_ids) AS r(id);
        RETURN;
    END IF;

    v_refusal := CASE
        WHEN v_coupon.starts_at IS NOT NULL AND v_now < v_coupon.starts_at THEN 'not_started'
        WHEN v_coupon.ends_at IS NOT NULL AND v_now >= v_coupon.ends_at THEN 'ended'
    END;

    -- The first free ticket after the hint, in number order: the free-ticket index answers it with one
    -- row, where a sequential scan would have to sort them all (see the header).
    v_after := v_coupon.issued_through;
    PERFORM 1 FROM coupon_tickets AS t
    WHERE t.coupon_id = p_coupon_id AND t.issued_at IS NULL AND t.number > v_after
    ORDER BY t.number
    LIMIT 1;
    IF NOT FOUND THEN
        v_after := 0;
    END IF;

    RETURN QUERY
        WITH asked AS (
            SELECT r.id, min(r.position) AS position
            FROM unnest(p_user_ids) WITH ORDINALITY AS r(id, position)
            GROUP BY r.id
        ), had AS (
            SELECT t.user_id, t.number, t.code, t.issued_at
            FROM coupon_tickets AS t
            WHERE t.coupon_id = p_coupon_id AND t.user_id = ANY (p_user_ids)
        ), waiting AS (
            SELECT a.id, row_number() OVER (ORDER BY a.position) AS slot
            FROM asked AS a
            WHERE v_refusal IS NULL AND NOT EXISTS (SELECT 1 FROM had AS h WHERE h.user_id = a.id)
        ), free AS (
            SELECT f.number, row_number() OVER (ORDER BY f.number) AS slot
            FROM (
                SELECT t.number FROM coupon_tickets AS t
                WHERE t.coupon_id = p_coupon_id AND t.issued_at IS NULL AND t.number > v_after
                ORDER BY t.number
                LIMIT least((SELECT count(*) FROM waiting), v_coupon.quantity - v_coupon.issued_count)
                FOR UPDATE SKIP LOCKED
            ) AS f
        ), claimed AS (
            UPDATE coupon_tickets AS t
            SET user_id = w.id, issued_at = v_now
            FROM free AS f JOIN waiting AS w ON w.slot = f.slot
            WHERE t.coupon_id = p_coupon_id AND t.number = f.number
            RETURNING t.user_id, t.number, t.code, t.issued_at
        ), counted AS (
            -- The counter moves by what was claimed, which SKIP LOCKED may make fewer than asked.
            UPDATE coupons AS c
            SET issued_count = c.issued_count + n.claimed,
                issued_through = greatest(c.issued_through, n.highest)
            FROM (SELECT count(*) AS claimed, max(number) AS highest FROM claimed) AS n
            WHERE c.id = p_coupon_id AND n.claimed > 0
        ), told AS (
            -- The group's events in one INSERT of at most two rows (migrations/0014): its ticket.issued
            -- events in one row of arrays in number order, then coupon.sold_out when the group took the
            -- last ticket, the coupon as it is now; outbox_events reads the first row as an event per
            -- ticket. Written here, not by a trigger of the counter's UPDATE: on Citus that trigger fires
            -- before this INSERT, and the sell-out would come before the tickets that made it.
            INSERT INTO outbox (coupon_id, type, occurred_at, issued_at, name, quantity, issued_count, starts_at, ends_at,
                                redeem_until, created_at, numbers, codes, user_ids)
            SELECT p_coupon_id, e.type, v_now, e.issued_at, e.name, e.quantity, e.issued_count, e.starts_at, e.ends_at,
                   e.redeem_until, e.created_at, e.numbers, e.codes, e.user_ids
            FROM (
                SELECT 'ticket.issued' AS type, v_now AS issued_at, NULL::text AS name, NULL::int AS quantity,
                       NULL::int AS issued_count, NULL::timestamptz AS starts_at, NULL::timestamptz AS ends_at,
                       NULL::timestamptz AS redeem_until, NULL::timestamptz AS created_at,
                       array_agg(c.number ORDER BY c.number) AS numbers,
                       array_agg(c.code ORDER BY c.number) AS codes, array_agg(c.user_id ORDER BY c.number) AS user_ids,
                       1 AS place
                FROM claimed AS c
                HAVING count(*) > 0
                UNION ALL
                SELECT 'coupon.sold_out', NULL, v_coupon.name, v_coupon.quantity, v_coupon.quantity, v_coupon.starts_at,
                       v_coupon.ends_at, v_coupon.redeem_until, v_coupon.created_at, NULL, NULL, NULL, 2
                FROM (SELECT count(*) AS claimed FROM claimed) AS n
                WHERE n.claimed > 0 AND v_coupon.issued_count + n.claimed >= v_coupon.quantity
            ) AS e
            ORDER BY e.place
        )
        SELECT 'already_issued', p_coupon_id, h.number, h.code, h.user_id, h.issued_at, NULL::timestamptz, NULL::text,
               NULL::timestamptz, false
        FROM had AS h
        UNION ALL
        SELECT 'issued', p_coupon_id, c.number, c.code, c.user_id, c.issued_at, NULL::timestamptz, NULL::text,
               NULL::timestamptz, false
        FROM claimed AS c
        UNION ALL
        SELECT coalesce(v_refusal, 'sold_out'), p_coupon_id, NULL::int, NULL::text, a.id, NULL::timestamptz,
               NULL::timestamptz, NULL::text, NULL::timestamptz, false
        FROM asked AS a
        WHERE NOT EXISTS (SELECT 1 FROM had AS h WHERE h.user_id = a.id)
          AND NOT EXISTS (SELECT 1 FROM claimed AS c WHERE c.user_id = a.id);
END;
$$;


--
-- Name: missing_ticket(bigint, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.missing_ticket(p_coupon_id bigint, p_code text) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN CASE WHEN p_code IS NOT NULL OR EXISTS (SELECT 1 FROM coupons AS c WHERE c.id = p_coupon_id)
                THEN 'ticket_not_found' ELSE 'coupon_not_found' END;
END;
$$;


--
-- Name: new_ticket_code(bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.new_ticket_code(p_coupon_id bigint) RETURNS text
    LANGUAGE sql
    AS $$
    SELECT p_coupon_id || '-' || replace(gen_random_uuid()::text, '-', '')
$$;


--
-- Name: notify_coupon_event(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.notify_coupon_event() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('coupon_events', NEW.id::text);
    RETURN NULL;
END;
$$;


--
-- Name: outbox_horizon(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.outbox_horizon(OUT last_position bigint, OUT running bigint[]) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_snapshot pg_snapshot;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO last_position FROM outbox_position_seq AS s;
    SELECT pg_current_snapshot() INTO v_snapshot;
    SELECT coalesce(array_agg(x.xid::text::bigint), '{}') INTO running
    FROM pg_snapshot_xip(v_snapshot) AS x(xid)
    WHERE x.xid::text::bigint % 4294967296 IN (
        SELECT a.backend_xid::text::bigint FROM pg_stat_activity AS a
        WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL
        UNION ALL
        SELECT p.transaction::text::bigint FROM pg_prepared_xacts AS p WHERE p.database = current_database());
END;
$$;


--
-- Name: redeem_ticket(bigint, text, text, text, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.redeem_ticket(p_coupon_id bigint, p_user_id text, p_code text, p_order_id text, p_hold_seconds integer DEFAULT NULL::integer) RETURNS SETOF public.ticket_answer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ticket  coupon_ticket_states%ROWTYPE;
    v_outcome text;
    v_until   timestamptz;
    v_now     timestamptz := statement_timestamp();
BEGIN
    v_ticket := ticket_of(p_coupon_id, p_user_id, p_code, true);
    v_outcome := CASE
        WHEN v_ticket.number IS NULL THEN missing_ticket(p_coupon_id, p_code)
        WHEN v_ticket.redeemed_at IS NOT NULL AND v_ticket.order_id = p_order_id THEN 'redeemed_before'
        WHEN v_ticket.redeemed_at IS NOT NULL THEN 'already_redeemed'
        WHEN v_ticket.hold_until IS NOT NULL AND v_ticket.order_id <> p_order_id THEN 'ticket_held'
        WHEN v_ticket.hold_until IS NOT NULL AND p_hold_seconds IS NOT NULL THEN 'hold_repeated'
    END;
    IF v_outcome IS NULL THEN
        SELECT c.redeem_until INTO v_until FROM coupons AS c WHERE c.id = p_coupon_id;
        IF v_until IS NOT NULL AND v_now >= v_until THEN
            v_outcome := 'redemption_closed';
        END IF;
    END IF;
    IF v_outcome IS NOT NULL THEN
        RETURN QUERY SELECT v_outcome, (v_ticket).*;
        RETURN;
    END IF;
    IF p_hold_seconds IS NOT NULL THEN
        v_outcome := 'hold_placed';
        v_ticket.hold_until := least(v_now + p_hold_seconds * interval '1 second', v_until);
    ELSE
        v_outcome := CASE WHEN v_ticket.hold_until IS NULL THEN 'redeemed' ELSE 'hold_confirmed' END;
        v_ticket.redeemed_at := v_now;
        v_ticket.hold_until := NULL;
    END IF;
    v_ticket.order_id := p_order_id;
    UPDATE coupon_tickets AS t
    SET redeemed_at = v_ticket.redeemed_at, order_id = v_ticket.order_id, hold_until = v_ticket.hold_until
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    PERFORM write_ticket_event(CASE v_outcome WHEN 'hold_placed' THEN 'ticket.held' ELSE 'ticket.redeemed' END, v_ticket, v_now);
    RETURN QUERY SELECT v_outcome, (v_ticket).*;
END;
$$;


--
-- Name: restore_ticket(bigint, text, text, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.restore_ticket(p_coupon_id bigint, p_user_id text, p_code text, p_order_id text) RETURNS SETOF public.ticket_answer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ticket coupon_ticket_states%ROWTYPE;
BEGIN
    v_ticket := ticket_of(p_coupon_id, p_user_id, p_code, true);
    IF v_ticket.number IS NULL THEN
        RETURN QUERY SELECT missing_ticket(p_coupon_id, p_code), (v_ticket).*;
        RETURN;
    END IF;
    IF v_ticket.order_id IS DISTINCT FROM p_order_id THEN
        RETURN QUERY SELECT CASE WHEN v_ticket.order_id IS NULL THEN 'not_redeemed' ELSE 'other_order' END, (v_ticket).*;
        RETURN;
    END IF;
    UPDATE coupon_tickets AS t SET redeemed_at = NULL, order_id = NULL, hold_until = NULL
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    v_ticket.redeemed_at := NULL;
    v_ticket.order_id := NULL;
    v_ticket.hold_until := NULL;
    PERFORM write_ticket_event('ticket.restored', v_ticket, statement_timestamp());
    RETURN QUERY SELECT 'restored', (v_ticket).*;
END;
$$;


--
-- Name: return_ticket(bigint, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.return_ticket(p_coupon_id bigint, p_user_id text) RETURNS SETOF public.ticket_answer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ticket coupon_ticket_states%ROWTYPE;
    v_code   text;
BEGIN
    -- Issuers of the coupon queue here too: the free tickets and the counter move together.
    PERFORM 1 FROM coupons AS c WHERE c.id = p_coupon_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'coupon_not_found', (v_ticket).*;
        RETURN;
    END IF;
    v_ticket := ticket_of(p_coupon_id, p_user_id, NULL, true);
    IF v_ticket.number IS NULL OR v_ticket.redeemed_at IS NOT NULL OR v_ticket.hold_until IS NOT NULL THEN
        RETURN QUERY SELECT CASE WHEN v_ticket.number IS NULL THEN 'ticket_not_found'
                                 WHEN v_ticket.redeemed_at IS NOT NULL THEN 'ticket_redeemed'
                                 ELSE 'ticket_held' END,
                            (v_ticket).*;
        RETURN;
    END IF;
    -- Drawn first: a distributed UPDATE (Citus, 0007) may not call a volatile function.
    v_code := new_ticket_code(p_coupon_id);
    UPDATE coupon_tickets AS t
    SET user_id = NULL, issued_at = NULL, code = v_code, order_id = NULL, hold_until = NULL
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
    UPDATE coupons AS c SET issued_count = c.issued_count - 1 WHERE c.id = p_coupon_id;
    PERFORM write_ticket_event('ticket.returned', v_ticket, statement_timestamp());
    RETURN QUERY SELECT 'returned', (v_ticket).*;
END;
$$;


--
-- Name: coupon_tickets; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.coupon_tickets (
    coupon_id bigint NOT NULL,
    number integer NOT NULL,
    code text NOT NULL,
    user_id text,
    issued_at timestamp with time zone,
    redeemed_at timestamp with time zone,
    order_id text,
    hold_until timestamp with time zone,
    CONSTRAINT coupon_tickets_issued_together CHECK (((user_id IS NULL) = (issued_at IS NULL))),
    CONSTRAINT coupon_tickets_ordered_once CHECK ((((order_id IS NULL) = ((redeemed_at IS NULL) AND (hold_until IS NULL))) AND ((redeemed_at IS NULL) OR (hold_until IS NULL)))),
    CONSTRAINT coupon_tickets_ordered_when_held CHECK (((order_id IS NULL) OR (user_id IS NOT NULL)))
);


--
-- Name: coupon_ticket_states; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.coupon_ticket_states AS
 SELECT t.coupon_id,
    t.number,
    t.code,
    t.user_id,
    t.issued_at,
    t.redeemed_at,
        CASE
            WHEN ((t.redeemed_at IS NOT NULL) OR (t.hold_until > statement_timestamp())) THEN t.order_id
            ELSE NULL::text
        END AS order_id,
        CASE
            WHEN (t.hold_until > statement_timestamp()) THEN t.hold_until
            ELSE NULL::timestamp with time zone
        END AS hold_until,
    COALESCE((t.hold_until <= statement_timestamp()), false) AS hold_lapsed
   FROM public.coupon_tickets t;


--
-- Name: ticket_of(bigint, text, text, boolean); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.ticket_of(p_coupon_id bigint, p_user_id text, p_code text, p_lock boolean) RETURNS public.coupon_ticket_states
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ticket coupon_ticket_states%ROWTYPE;
BEGIN
    IF p_code IS NULL THEN
        SELECT * INTO v_ticket FROM coupon_ticket_states AS t
        WHERE t.coupon_id = p_coupon_id AND t.user_id = p_user_id;
    ELSE
        SELECT * INTO v_ticket FROM coupon_ticket_states AS t
        WHERE t.coupon_id = p_coupon_id AND t.code = p_code AND t.user_id = coalesce(p_user_id, t.user_id);
    END IF;
    IF v_ticket.number IS NULL OR NOT (p_lock OR v_ticket.hold_lapsed) THEN
        RETURN v_ticket;
    END IF;
    SELECT * INTO v_ticket FROM coupon_ticket_states AS t
    WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number AND t.code = v_ticket.code
      AND t.user_id = v_ticket.user_id
    FOR UPDATE;
    IF v_ticket.hold_lapsed THEN
        UPDATE coupon_tickets AS t SET order_id = NULL, hold_until = NULL
        WHERE t.coupon_id = p_coupon_id AND t.number = v_ticket.number;
        PERFORM write_ticket_event('ticket.hold_lapsed', v_ticket, statement_timestamp());
    END IF;
    RETURN v_ticket;
END;
$$;


--
-- Name: write_coupon_event(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.write_coupon_event() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO outbox (coupon_id, type, occurred_at, name, quantity, issued_count, starts_at, ends_at, redeem_until,
                        created_at)
    VALUES (NEW.id, TG_ARGV[0], clock_timestamp(), NEW.name, NEW.quantity, NEW.issued_count, NEW.starts_at, NEW.ends_at,
            NEW.redeem_until, NEW.created_at);
    RETURN NULL;
END;
$$;


--
-- Name: write_ticket_event(text, public.coupon_ticket_states, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.write_ticket_event(p_type text, p_ticket public.coupon_ticket_states, p_at timestamp with time zone) RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO outbox (coupon_id, type, occurred_at, number, code, user_id, issued_at, redeemed_at, order_id, hold_until)
    VALUES (p_ticket.coupon_id, p_type, p_at, p_ticket.number, p_ticket.code, p_ticket.user_id, p_ticket.issued_at,
            p_ticket.redeemed_at, p_ticket.order_id, p_ticket.hold_until)
$$;


--
-- Name: coupons_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.coupons ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.coupons_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: outbox; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.outbox (
    "position" bigint NOT NULL,
    coupon_id bigint NOT NULL,
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    type text NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    number integer,
    code text,
    user_id text,
    issued_at timestamp with time zone,
    redeemed_at timestamp with time zone,
    order_id text,
    hold_until timestamp with time zone,
    name text,
    quantity integer,
    issued_count integer,
    starts_at timestamp with time zone,
    ends_at timestamp with time zone,
    redeem_until timestamp with time zone,
    created_at timestamp with time zone,
    numbers integer[],
    codes text[],
    user_ids text[]
)
WITH (toast_tuple_target='8160');


--
-- Name: outbox_events; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.outbox_events AS
 SELECT o."position",
    (COALESCE(e.within, (1)::bigint))::integer AS within,
    COALESCE(cardinality(o.numbers), 1) AS row_events,
        CASE
            WHEN (e.within IS NULL) THEN o.id
            ELSE (md5((((o.id)::text || '.'::text) || e.within)))::uuid
        END AS id,
    o.type,
    o.occurred_at,
    o.coupon_id,
    COALESCE(e.user_id, o.user_id) AS user_id,
    COALESCE(e.number, o.number) AS number,
    COALESCE(e.code, o.code) AS code,
    o.issued_at,
    o.redeemed_at,
    o.order_id,
    o.hold_until,
    o.name,
    o.quantity,
    o.issued_count,
    o.starts_at,
    o.ends_at,
    o.redeem_until,
    o.created_at
   FROM (public.outbox o
     LEFT JOIN LATERAL UNNEST(o.numbers, o.codes, o.user_ids) WITH ORDINALITY e(number, code, user_id, within) ON (true));


--
-- Name: outbox_position_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.outbox ALTER COLUMN "position" ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.outbox_position_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: schema_functions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_functions (
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: webhooks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.webhooks (
    id bigint NOT NULL,
    url text NOT NULL,
    types text[],
    secret text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    delivered_through bigint NOT NULL,
    last_delivered_at timestamp with time zone,
    failing_since timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone,
    gave_up_at timestamp with time zone,
    lease_holder text,
    lease_until timestamp with time zone,
    delivered_within integer
);


--
-- Name: webhooks_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.webhooks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.webhooks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: coupon_tickets coupon_tickets_code_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.coupon_tickets
    ADD CONSTRAINT coupon_tickets_code_unique UNIQUE (coupon_id, code);


--
-- Name: coupon_tickets coupon_tickets_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.coupon_tickets
    ADD CONSTRAINT coupon_tickets_pkey PRIMARY KEY (coupon_id, number);


--
-- Name: coupon_tickets coupon_tickets_user_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.coupon_tickets
    ADD CONSTRAINT coupon_tickets_user_unique UNIQUE (coupon_id, user_id);


--
-- Name: coupons coupons_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.coupons
    ADD CONSTRAINT coupons_pkey PRIMARY KEY (id);


--
-- Name: outbox outbox_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbox
    ADD CONSTRAINT outbox_pkey PRIMARY KEY ("position", coupon_id);


--
-- Name: schema_functions schema_functions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_functions
    ADD CONSTRAINT schema_functions_pkey PRIMARY KEY (name);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: webhooks webhooks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.webhooks
    ADD CONSTRAINT webhooks_pkey PRIMARY KEY (id);


--
-- Name: coupon_tickets_bare_code; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX coupon_tickets_bare_code ON public.coupon_tickets USING btree (code) WHERE (code !~~ '%-%'::text);


--
-- Name: coupon_tickets_by_order; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX coupon_tickets_by_order ON public.coupon_tickets USING btree (order_id) WHERE (order_id IS NOT NULL);


--
-- Name: coupon_tickets_by_user; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX coupon_tickets_by_user ON public.coupon_tickets USING btree (user_id, issued_at, coupon_id) WHERE (user_id IS NOT NULL);


--
-- Name: coupon_tickets_free; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX coupon_tickets_free ON public.coupon_tickets USING btree (coupon_id, number) WHERE (issued_at IS NULL);


--
-- Name: coupons coupons_changed_event; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER coupons_changed_event AFTER UPDATE ON public.coupons FOR EACH ROW WHEN (((old.name IS DISTINCT FROM new.name) OR (old.quantity IS DISTINCT FROM new.quantity) OR (old.starts_at IS DISTINCT FROM new.starts_at) OR (old.ends_at IS DISTINCT FROM new.ends_at) OR (old.redeem_until IS DISTINCT FROM new.redeem_until))) EXECUTE FUNCTION public.write_coupon_event('coupon.changed');


--
-- Name: coupons coupons_changed_notify; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER coupons_changed_notify AFTER UPDATE ON public.coupons FOR EACH ROW WHEN (((old.quantity IS DISTINCT FROM new.quantity) OR (old.starts_at IS DISTINCT FROM new.starts_at) OR (old.ends_at IS DISTINCT FROM new.ends_at) OR ((old.issued_count >= old.quantity) <> (new.issued_count >= new.quantity)))) EXECUTE FUNCTION public.notify_coupon_event();


--
-- Name: coupons coupons_created_event; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER coupons_created_event AFTER INSERT ON public.coupons FOR EACH ROW EXECUTE FUNCTION public.write_coupon_event('coupon.created');


--
-- Name: coupons coupons_created_notify; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER coupons_created_notify AFTER INSERT ON public.coupons FOR EACH ROW EXECUTE FUNCTION public.notify_coupon_event();


--
-- Name: coupons coupons_sold_out_event; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER coupons_sold_out_event AFTER UPDATE ON public.coupons FOR EACH ROW WHEN (((old.issued_count < old.quantity) AND (new.issued_count >= new.quantity) AND (old.quantity <> new.quantity))) EXECUTE FUNCTION public.write_coupon_event('coupon.sold_out');


--
-- Name: coupon_tickets coupon_tickets_coupon_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.coupon_tickets
    ADD CONSTRAINT coupon_tickets_coupon_id_fkey FOREIGN KEY (coupon_id) REFERENCES public.coupons(id);


--
-- PostgreSQL database dump complete
--


