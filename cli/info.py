"""``qdarpc devices`` and ``qdarpc query``: what the emulated SoC offers, as plain data."""
from __future__ import annotations

import re


def _legacy_nodes(soc, dom) -> list[str]:
    # The legacy driver is optional in a build: list its nodes when the SoC has them.
    if not hasattr(soc, "legacy_nodes"):
        return []
    names = (f"fastrpc-{dom.name}", f"fastrpc-{dom.name}-secure")
    return [p for p in soc.legacy_nodes() if p.rsplit("/", 1)[-1] in names]


def devices(soc_profile: str | None, kernel: str | None = None) -> dict:
    """The domains of a fresh SoC built from ``soc_profile`` (and ``kernel``, a selection of
    kernel revisions): the revision each driver follows, ids, device nodes of both drivers,
    context banks (total, free, SIDs), protection domains alive, DSP counters."""
    from qda_core.kernels import describe
    from qda_core.soc import Soc

    soc = Soc(soc_profile, kernel=kernel)
    out = []
    for d in soc.domains.values():
        procs = d.dsp.processes()
        out.append({
            "domain": d.name,
            "domain_id": d.domain_id,
            "nodes": {"accel": d.accel.path, "legacy": _legacy_nodes(soc, d)},
            "context_banks": {"total": len(d.bus.cbs), "free": d.bus.free_count,
                              "sids": [cb.sid for cb in d.bus.cbs]},
            "pds_alive": sum(p.state == "alive" for p in procs),
            "dsp_stats": d.dsp.stats.snapshot(),
        })
    return {"soc": soc_profile or "default", "kernel": describe(soc.kernel), "domains": out}


def format_devices(info: dict) -> str:
    rows = [("DOMAIN", "ID", "ACCEL NODE", "LEGACY NODES", "CBS FREE/TOTAL", "SIDS", "PDS")]
    for d in info["domains"]:
        cbs = d["context_banks"]
        rows.append((d["domain"], str(d["domain_id"]), d["nodes"]["accel"],
                     ", ".join(d["nodes"]["legacy"]) or "-", f"{cbs['free']}/{cbs['total']}",
                     ",".join(map(str, cbs["sids"])), str(d["pds_alive"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    kernel = [f"kernel {front:<6}  {k['revision']}  {k['title']}{'' if k['exact'] else ' (semantic)'}"
              for front, k in info["kernel"].items()]
    return f"SoC profile {info['soc']}\n" + "\n".join(kernel + lines)


def _node_for(soc, device: str) -> str:
    """``/dev/accel/accelN``, ``accelN``, a domain name or a domain id -> the accel node path."""
    if re.fullmatch(r"accel\d+", device):
        return f"/dev/accel/{device}"
    if device.startswith("/"):
        return device
    return soc.domain(int(device) if device.isdigit() else device).accel.path


def query(device: str, soc_profile: str | None, kernel: str | None = None) -> dict:
    """Open the accel node and issue DRM_IOCTL_QDA_QUERY, as a user program would."""
    from qda_core import uapi
    from qda_core.soc import Soc

    soc = Soc(soc_profile, kernel=kernel)
    path = _node_for(soc, device)
    if path.startswith("/dev/fastrpc-"):
        raise ValueError(f"{path} is a legacy FastRPC node; DRM_IOCTL_QDA_QUERY exists on the QDA accel nodes "
                         f"(/dev/accel/accelN) only")
    with soc.open(path) as f:
        name = f.query()
        return {"device": path, "domain": f.device.dsp_name, "ioctl": "DRM_IOCTL_QDA_QUERY",
                "request": f"{uapi.DRM_IOCTL_QDA_QUERY:#x}", "dsp_name": name, "client_id": f.client_id}
