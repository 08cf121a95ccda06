"""Every condition type, condition reason and Event reason the operator writes: the one place they are
spelled. docs/reference/conditions.md explains each one; a unit test keeps its tables equal to these.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    """``status.conditions[].type``."""

    READY = "Ready"
    INVALID_SPEC = "InvalidSpec"
    METRICS_AVAILABLE = "MetricsAvailable"
    INSUFFICIENT_DATA = "InsufficientData"  # ModelRoute
    DEGRADED = "Degraded"  # ModelRoute
    ALERTS_DELIVERED = "AlertsDelivered"
    RECORDS_DELIVERED = "RecordsDelivered"
    RECONCILING = "Reconciling"  # kstatus' InProgress, derived from Ready
    STALLED = "Stalled"  # kstatus' Failed, derived from Ready


class ConditionReason(StrEnum):
    """``status.conditions[].reason``."""

    PUBLISHED = "Published"
    DRY_RUN = "DryRun"
    OUTPUT_FAILED = "OutputFailed"
    INVALID_SPEC = "InvalidSpec"
    VALIDATION_FAILED = "ValidationFailed"
    SPEC_ACCEPTED = "SpecAccepted"
    QUERIES_ANSWERED = "QueriesAnswered"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    TOO_FEW_REQUESTS = "TooFewRequests"
    ENOUGH_REQUESTS = "EnoughRequests"
    NO_HEALTHY_BACKUP = "NoHealthyBackup"
    FAILOVER_CAP_REACHED = "FailoverCapReached"
    HEALTHY = "Healthy"
    DELIVERED = "Delivered"
    DELIVERY_FAILED = "DeliveryFailed"
    RECONCILED = "Reconciled"
    RETRYING = "Retrying"
    STALLED = "Stalled"


class EventReason(StrEnum):
    """``reason`` of the Events posted on an object."""

    PROFILE_SELECTED = "ProfileSelected"
    PROFILE_SWITCHED = "ProfileSwitched"
    ESCALATION_EXPIRED = "EscalationExpired"
    SHADOW_PROFILE = "ShadowProfile"
    EXTERNAL_SERVICE_UNAVAILABLE = "ExternalServiceUnavailable"
    EXTERNAL_SERVICE_RECOVERED = "ExternalServiceRecovered"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    METRICS_RECOVERED = "MetricsRecovered"
    MODEL_SWITCHED = "ModelSwitched"
    MODEL_ROLLED_BACK = "ModelRolledBack"
    BACKUP_SCALED = "BackupScaled"
    NO_HEALTHY_BACKUP = "NoHealthyBackup"
    FAILOVER_CAP_REACHED = "FailoverCapReached"
    DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
    ALERT_FIRING = "AlertFiring"
    ALERT_RESOLVED = "AlertResolved"
    INVALID_SPEC = "InvalidSpec"
