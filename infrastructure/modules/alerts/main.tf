# Alerts on what the platform's own commands log (one line per outcome) and on the API's
# platform metrics. Every rule notifies one action group.
resource "azurerm_monitor_action_group" "oncall" {
  name                = "ag-${var.name}-oncall"
  resource_group_name = var.resource_group_name
  short_name          = "ratesoncall"
  tags                = var.tags

  email_receiver {
    name                    = "oncall"
    email_address           = var.alert_email
    use_common_alert_schema = true
  }
}

locals {
  logs = "ContainerAppConsoleLogs_CL"
  # Lines `dbaccess rotate` prints: a failed step, a refused configuration, an
  # unreachable database; and the outcomes of a good run.
  rotation_failed = join(" or ", [
    "Log_s has \"the next run starts from a new password\"",
    "Log_s has \"dbaccess: configuration error\"",
    "Log_s has \"dbaccess: cannot reach the database\"",
    "Log_s has \"dbaccess: audit chain is busy\"",
  ])
  # A job's lines: console logs name it ContainerJobName_s where the workspace has that
  # column, ContainerAppName_s otherwise; system logs JobName_s.
  job_is = {
    for key, job in {
      expiry       = var.expiry_job_name
      access_alert = var.access_alert_job_name
      drill        = var.drill_job_name
    } :
    key => "(column_ifexists(\"ContainerJobName_s\", \"\") == \"${job}\" or column_ifexists(\"JobName_s\", \"\") == \"${job}\" or column_ifexists(\"ContainerAppName_s\", \"\") == \"${job}\")"
  }
  rotation_ok = "Log_s startswith \"dbaccess: rotated\" or Log_s startswith \"dbaccess: not due\" or Log_s startswith \"dbaccess: retired\""
  log_rules = {
    rotation-failed = {
      description = "A credential rotation run failed (dbaccess rotate exit 1, 2 or 4): see the audit trail, event rotation.fail."
      severity    = 1
      frequency   = "PT15M"
      window      = "PT1H"
      query       = "${local.logs} | where ${local.rotation_failed}"
      operator    = "GreaterThan"
      threshold   = 0
    }
    rotation-stuck = {
      description = "Rotation failed on two daily runs: a pending version stays unfinished (README: Recovering a stuck rotation)."
      severity    = 1
      frequency   = "PT1H"
      window      = "P2D"
      query       = "${local.logs} | where ${local.rotation_failed} | summarize days = dcount(bin(TimeGenerated, 1d)) | where days >= 2"
      operator    = "GreaterThan"
      threshold   = 0
    }
    rotation-overdue = {
      description = "No successful rotation run for two days: the daily job is not running, so the credential ages towards its VALID UNTIL."
      severity    = 2
      frequency   = "PT1H"
      window      = "P2D"
      query       = "${local.logs} | where column_ifexists(\"ContainerJobName_s\", \"\") == \"${var.rotation_job_name}\" or ContainerAppName_s == \"${var.rotation_job_name}\" | where ${local.rotation_ok}"
      operator    = "LessThan"
      threshold   = 1
    }
    audit-verify-failed = {
      description = "The audit job found the audit hash chain or its anchors broken (dbaccess audit verify/anchor exit 5), or could not anchor (exit 4)."
      severity    = 0
      frequency   = "PT15M"
      window      = "PT1H"
      query       = "${local.logs} | where Log_s has \"audit chain broken\" or Log_s has \"audit anchors broken\" or Log_s has \"dbaccess: cannot anchor\""
      operator    = "GreaterThan"
      threshold   = 0
    }
    audit-overdue = {
      description = "No audit chain verified against its anchors for three hours: the hourly audit job is not running or not finishing."
      severity    = 1
      frequency   = "PT1H"
      window      = "PT3H"
      query       = "${local.logs} | where Log_s startswith \"audit chain intact\""
      operator    = "LessThan"
      threshold   = 1
    }
    access-overdue = {
      description = "The access-expiry job reports granted database access past its expiry still active (access.overdue)."
      severity    = 1
      frequency   = "PT15M"
      window      = "PT1H"
      query       = "${local.logs} | where Log_s has \"access.overdue\""
      operator    = "GreaterThan"
      threshold   = 0
    }
    access-drift = {
      description = "The access-expiry job revoked a membership of a grantable role that no grant backed (access.drift): someone granted it behind the workflow's back."
      severity    = 1
      frequency   = "PT15M"
      window      = "PT1H"
      query       = "${local.logs} | where Log_s has \"access.drift\""
      operator    = "GreaterThan"
      threshold   = 0
    }
    access-expiry-stalled = {
      description = "No access-expiry run finished for 15 minutes (it runs every minute): open sessions of ended grants are not being ended (new logins still are refused: VALID UNTIL)."
      severity    = 1
      frequency   = "PT5M"
      window      = "PT15M"
      query       = "${local.logs} | where ${local.job_is.expiry} | where Log_s startswith \"dbaccess: expiry run done\""
      operator    = "LessThan"
      threshold   = 1
    }
    # One line per unreviewed emergency grant, from the daily job (its window covers
    # one run, so a grant left unreviewed alerts again each day).
    access-unreviewed = {
      description = "An emergency (break-glass) database grant has not been reviewed: an approver other than the requester runs `dbaccess access review ID --note ...` (README: Access requests)."
      severity    = 2
      frequency   = "PT1H"
      window      = "PT1H"
      query       = "${local.logs} | where ${local.job_is.access_alert} | where Log_s has \"access.unreviewed\""
      operator    = "GreaterThan"
      threshold   = 0
    }
    dr-drill-failed = {
      description = "The weekly restore drill failed: no restore (exit 2), a check failed (1), inconclusive (3), or the job was stopped (README: Disaster recovery). Check for a scratch server left behind."
      severity    = 1
      frequency   = "PT15M"
      window      = "PT1H"
      query       = "union ${local.logs}, ContainerAppSystemLogs_CL | where ${local.job_is.drill} | where Log_s has \"dr-drill: drill failed\" or Log_s has \"dr-drill: RESTORE FAILED\" or (Type == \"ContainerAppSystemLogs_CL\" and Log_s has_cs \"Failed\")"
      operator    = "GreaterThan"
      threshold   = 0
    }
    api-not-ready = {
      description = "The API's readiness probe keeps failing (/readyz: database or credential unavailable)."
      severity    = 1
      frequency   = "PT5M"
      window      = "PT15M"
      query       = "ContainerAppSystemLogs_CL | where ContainerAppName_s == \"${var.api_name}\" | where Log_s has \"Readiness probe failed\""
      operator    = "GreaterThan"
      threshold   = 5
    }
    api-5xx-rate = {
      description = "More than 5 % of the API's requests answered 5xx over 15 minutes (at least 20 requests)."
      severity    = 1
      frequency   = "PT5M"
      window      = "PT15M"
      query       = "${local.logs} | where ContainerAppName_s == \"${var.api_name}\" | extend entry = parse_json(Log_s) | where isnotnull(entry.status) | summarize requests = count(), errors = countif(toint(entry.status) >= 500) | where requests >= 20 and errors * 20 > requests"
      operator    = "GreaterThan"
      threshold   = 0
    }
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "this" {
  for_each             = local.log_rules
  name                 = "alert-${var.name}-${each.key}"
  resource_group_name  = var.resource_group_name
  location             = var.location
  description          = each.value.description
  severity             = each.value.severity
  evaluation_frequency = each.value.frequency
  window_duration      = each.value.window
  scopes               = [var.log_analytics_workspace_id]
  # Tables appear with the first log line; the rules exist before any job has run.
  skip_query_validation = true

  criteria {
    query                   = each.value.query
    time_aggregation_method = "Count"
    operator                = each.value.operator
    threshold               = each.value.threshold
    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [azurerm_monitor_action_group.oncall.id]
  }

  tags = var.tags
}

locals {
  metric_rules = {
    api-5xx = {
      description = "The API answered more than 10 requests with 5xx in 5 minutes."
      metric      = "Requests"
      dimension   = { name = "statusCodeCategory", values = ["5xx"] }
      threshold   = 10
      window      = "PT5M"
    }
    api-restarts = {
      description = "API replicas restarted (failing liveness or readiness probes, crashes) more than twice in 15 minutes."
      metric      = "RestartCount"
      dimension   = null
      threshold   = 2
      window      = "PT15M"
    }
  }
}

resource "azurerm_monitor_metric_alert" "this" {
  for_each            = local.metric_rules
  name                = "alert-${var.name}-${each.key}"
  resource_group_name = var.resource_group_name
  scopes              = [var.api_id]
  description         = each.value.description
  severity            = 1
  frequency           = "PT1M"
  window_size         = each.value.window

  criteria {
    metric_namespace = "Microsoft.App/containerApps"
    metric_name      = each.value.metric
    aggregation      = "Total"
    operator         = "GreaterThan"
    threshold        = each.value.threshold

    dynamic "dimension" {
      for_each = each.value.dimension == null ? [] : [each.value.dimension]
      content {
        name     = dimension.value.name
        operator = "Include"
        values   = dimension.value.values
      }
    }
  }

  action {
    action_group_id = azurerm_monitor_action_group.oncall.id
  }

  tags = var.tags
}
