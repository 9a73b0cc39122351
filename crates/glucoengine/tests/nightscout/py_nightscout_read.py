"""Read a GlucoSync Nightscout site with the real py-nightscout client (Home Assistant's).

    python py_nightscout_read.py <base_url> <api_secret_plain_or_empty> [<token>]

Run it with the interpreter printed by `scripts/nightscout-clients python` (py-nightscout 1.3.3).
It calls, in Home Assistant's order, get_server_status, get_sgvs, get_treatments, get_profiles and
get_latest_devices_status, and prints ONE JSON object on stdout built from the parsed model objects:

    {"auth": "secret"|"token"|"anonymous", "status": {...}, "sgvs": [...], "treatments": [...],
     "profiles": [...], "devicestatus": {...}}

How py-nightscout authenticates (all it can do): a plain secret is SHA-1-hashed by the library and
sent as the header `api-secret: <sha1 hex>`; a token can only be passed as the api_secret value
`token=<token>`, which the library sends verbatim as `api-secret: token=<token>` (no query string,
no Bearer). With neither, no credential is sent. Every request also carries
`Content-Type: application/json` and `Accept: application/json`.

Exit codes: 0 ok; 2 usage; 3 the server answered a non-2xx status (stderr names the call and the
code); 4 py-nightscout could not parse an answer (the compatibility bug we are testing for);
1 anything else (connection refused, non-JSON content type, ...).
"""

import asyncio
import datetime
import json
import sys

import aiohttp
import py_nightscout


def iso(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value


def schedule(sched):
    if sched is None:
        return None
    return [[int(e.offset.total_seconds()), e.value] for e in sched.entries]


def sgv_json(s):
    return {
        "sgv": s.sgv,
        "sgv_mmol": s.sgv_mmol,
        "delta": s.delta,
        "delta_mmol": s.delta_mmol,
        "date": iso(s.date),
        "date_from_dateString": isinstance(s.date, datetime.datetime),
        "direction": s.direction,
        "device": s.device,
    }


TREATMENT_FIELDS = ("eventType", "enteredBy", "insulin", "carbs", "glucose", "glucoseType", "units",
                    "device", "temp", "absolute", "rate", "duration", "unabsorbed", "suspended",
                    "type", "programmed", "foodType", "absorptionTime")


def treatment_json(t):
    out = {k: getattr(t, k) for k in TREATMENT_FIELDS}
    out["created_at"] = iso(t.created_at)
    out["timestamp"] = iso(t.timestamp)
    out["_id"] = t._json.get("_id")
    return out


def profile_json(name, p):
    return {
        "name": name,
        "dia": p.dia,
        "timezone": str(p.timezone) if p.timezone is not None else None,
        "basal": schedule(p.basal),
        "sens": schedule(p.sens),
        "target_low": schedule(p.target_low),
        "target_high": schedule(p.target_high),
    }


def definitions_json(pset):
    out = []
    for d in pset.profile_definitions:
        store = d.store or {}
        out.append({
            "startDate": iso(d.startDate),
            "created_at": iso(d.created_at),
            "defaultProfile": d.defaultProfile,
            "units": d.units,
            "store": [profile_json(name, p) for name, p in store.items()],
        })
    return out


def devicestatus_json(latest):
    out = {}
    for device, ds in latest.items():
        pump = ds.pump
        uploader = ds.uploader
        out[str(device)] = {
            "created_at": iso(ds.created_at),
            "pump": None if pump is None else {
                "clock": iso(pump.clock),
                "reservoir": pump.reservoir,
                "has_status": pump.status is not None,
            },
            "uploader": None if uploader is None else {
                "battery": uploader.battery,
                "batteryVoltage": uploader.batteryVoltage,
                "type": uploader.type,
            },
            "has_loop": ds.loop is not None,
            "has_openaps": ds.openaps is not None,
        }
    return out


class CallFailed(Exception):
    def __init__(self, call, code, message):
        super().__init__(message)
        self.call, self.code = call, code


async def step(name, coro):
    try:
        return await coro
    except aiohttp.ClientResponseError as e:
        raise CallFailed(name, 3, f"HTTP {e.status} {e.message} ({e.request_info.url})") from e
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise CallFailed(name, 4, f"py-nightscout could not parse the answer: {type(e).__name__}: {e}") from e
    except Exception as e:  # connection refused, wrong content type, ...
        raise CallFailed(name, 1, f"{type(e).__name__}: {e}") from e


async def read(base_url, secret, token):
    if token:
        api_secret, auth = "token=" + token, "token"
    elif secret:
        api_secret, auth = secret, "secret"
    else:
        api_secret, auth = None, "anonymous"
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = py_nightscout.Api(base_url, api_secret=api_secret, session=session)
        status = await step("get_server_status", api.get_server_status())
        sgvs = await step("get_sgvs", api.get_sgvs())
        treatments = await step("get_treatments", api.get_treatments())
        profiles = await step("get_profiles", api.get_profiles())
        latest = await step("get_latest_devices_status", api.get_latest_devices_status())
        try:
            return {
                "auth": auth,
                "status": {
                    "status": status.status,
                    "version": status.version,
                    "name": status.name,
                    "apiEnabled": status.apiEnabled,
                    "settings": status.settings,
                },
                "sgvs": [sgv_json(s) for s in sgvs],
                "treatments": [treatment_json(t) for t in treatments],
                "profiles": definitions_json(profiles),
                "devicestatus": devicestatus_json(latest),
            }
        except Exception as e:
            raise CallFailed("report", 4, f"{type(e).__name__}: {e}") from e


def main(argv):
    if len(argv) not in (3, 4):
        print("usage: py_nightscout_read.py <base_url> <api_secret_plain_or_empty> [<token>]", file=sys.stderr)
        return 2
    base_url, secret = argv[1], argv[2]
    token = argv[3] if len(argv) == 4 else ""
    try:
        result = asyncio.run(read(base_url, secret, token))
    except CallFailed as e:
        print(f"py_nightscout_read: {e.call} failed: {e}", file=sys.stderr)
        return e.code
    json.dump(result, sys.stdout, default=str, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
