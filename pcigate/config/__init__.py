"""``pcigate.yaml``: a typed, frozen model and a loader whose errors name the key and the line.

Everything is validated when the file is loaded; secrets stay references (``env:NAME``,
``file:/path``) until a component calls :func:`resolve_secret`. Only the names below are public.
"""

from pcigate.config.addresses import HostPort
from pcigate.config.durations import format_duration, parse_duration
from pcigate.config.errors import ConfigError, Problem
from pcigate.config.load import CONFIG_ENV, find_config, load_config, parse_config
from pcigate.config.models import (
    Approvals,
    ClaimNames,
    ColumnRule,
    Config,
    Connection,
    Gateway,
    Identity,
    JitAccess,
    JitApproval,
    Ledger,
    Limits,
    ListenTls,
    MaskingProfile,
    Nats,
    Policy,
    ResultLimit,
    Retention,
    RoleMapping,
    Rule,
    RuleApproval,
    RuleMask,
    Upstream,
    UpstreamTls,
)
from pcigate.config.secrets import SecretError, resolve_secret

__all__ = [
    "CONFIG_ENV",
    "Approvals",
    "ClaimNames",
    "ColumnRule",
    "Config",
    "ConfigError",
    "Connection",
    "Gateway",
    "HostPort",
    "Identity",
    "JitAccess",
    "JitApproval",
    "Ledger",
    "Limits",
    "ListenTls",
    "MaskingProfile",
    "Nats",
    "Policy",
    "Problem",
    "ResultLimit",
    "Retention",
    "RoleMapping",
    "Rule",
    "RuleApproval",
    "RuleMask",
    "SecretError",
    "Upstream",
    "UpstreamTls",
    "find_config",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
    "resolve_secret",
]
