"""Every user-visible word of the web application, in one catalogue (zh-CN), so another language is one
more table and no template or handler carries text of its own. The words are examples/web.md's."""

from __future__ import annotations

from typing import Any

LANGUAGE = "zh-CN"

ZH_CN: dict[str, str] = {
    "app.title": "一卡通发放台账",
    "nav.home": "首页",
    "nav.roster": "名册",
    "nav.month_end": "月结",
    "nav.batches": "批次",
    "nav.bank": "回盘",
    "nav.decisions": "决定",
    "nav.reports": "报表",
    "nav.audit": "审计",
    "nav.logout": "退出",
    "nav.signed_in": "当前账户：{name}（{role}）",
    "role.clerk": "经办人",
    "role.checker": "复核人",
    "role.auditor": "审计",
    "role.admin": "管理员",
    "login.title": "登录",
    "login.username": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.wrong": "用户名或密码错误",
    "login.waiting": "登录失败次数过多，请 {minutes} 分钟后再试",
    "login.disabled": "该账户已停用",
    "login.no_accounts": "本台账尚无账户：请先用 yikatong init --admin 名称 创建管理员",
    "login.expired": "会话已过期，请重新登录",
    "state.drafted": "待导出",
    "state.exported": "已导出",
    "state.approved": "已批准",
    "state.submitted": "已提交银行",
    "state.settled": "已回盘",
    "deadline.paid": "按时到账",
    "deadline.paid late": "逾期到账",
    "deadline.overdue": "逾期",
    "deadline.at risk": "临近",
    "deadline.on time": "正常",
    "deadline.unknown": "日历未知",
    "home.title": "首页",
    "home.month": "{month} 本月批次",
    "home.choose_month": "月份",
    "home.show": "查看",
    "home.deadlines": "未来 {days} 天到账期限（截至 {today}）",
    "home.no_deadlines": "未来 {days} 天没有到账期限",
    "home.balances": "各项目未到账与退回",
    "home.on_time": "{year} 年按时发放率",
    "home.no_on_time": "{year} 年尚无到期的发放",
    "home.chart_paid": "各期实发（元）",
    "home.chart_rate": "按时发放率（%）",
    "col.batch": "批次",
    "col.programme": "项目",
    "col.region": "区划",
    "col.period": "期间",
    "col.run_month": "月结",
    "col.payments": "笔数",
    "col.amount": "金额",
    "col.state": "状态",
    "col.due_date": "到账期限",
    "col.last_safe_day": "最迟报送日",
    "col.deadline_state": "期限状态",
    "col.count": "批次数",
    "col.accrued": "应发",
    "col.paid": "实发",
    "col.returned": "退回",
    "col.outstanding": "未到账",
    "col.on_time_rate": "按时发放率",
    "col.due": "应发笔数",
    "col.on_time": "按时笔数",
    "col.month": "月份",
    "col.name": "姓名",
    "col.id_number": "身份证号",
    "col.account": "账号",
    "col.persons": "人数",
    "col.late": "补发",
    "col.result": "回盘结果",
    "batches.title": "批次",
    "batches.filter": "筛选",
    "batches.all": "全部",
    "batches.total": "共 {count} 个批次，{payments} 笔，{amount}",
    "batches.none": "没有符合条件的批次",
    "batch.title": "批次 {id}",
    "batch.kind.adjustment": "补发差额",
    "batch.exported_by": "经办",
    "batch.approved_by": "审批",
    "batch.submitted_by": "提交银行",
    "batch.payments": "发放明细",
    "batch.page": "第 {first}–{last} 笔，共 {count} 笔",
    "batch.prev": "上一页",
    "batch.next": "下一页",
    "batch.export": "导出",
    "batch.format": "格式",
    "batch.format.pain001": "pain.001 银行文件",
    "batch.format.onecard": "一卡通银行文件",
    "batch.format.xlsx": "花名册 xlsx",
    "batch.format.notice": "公示 xlsx",
    "batch.approve": "批准",
    "batch.approve_confirm": "批准该批次？共 {payments} 笔，{amount}",
    "batch.submit": "提交银行",
    "batch.submit_confirm": "将该批次标记为已提交银行？",
    "batch.approved": "批次已批准（{name}）",
    "batch.submitted": "批次已提交银行（{name}）",
    "result.paid": "已到账",
    "result.returned": "退回",
    "error.title": "操作被拒绝",
    "error.forbidden": "您的角色不能执行此操作",
    "error.csrf": "表单已失效或来源不明（CSRF 校验失败），请刷新页面后重试",
    "error.login_first": "请先登录",
    "error.not_found": "找不到该批次",
    "error.bad_input": "输入有误：{detail}",
    "error.back": "返回",
    "none": "—",
    # --- roster and bank results (uploads.py) ---
    #
    # --- month-end and re-issue (monthend.py) ---
    "monthend.title": "月结",
    "monthend.month": "月份",
    "monthend.start": "开始月结",
    "monthend.start_confirm": "开始 {month} 月结？",
    "monthend.rerun_harmless": "同一月份可以再次月结：已记账的发放不会重复，只补记尚缺的部分。",
    "monthend.months_run": "已完成的月结",
    "monthend.none_run": "尚未运行过月结",
    "monthend.started": "{month} 月结已开始（{actor}）",
    "monthend.running": "本月月结正在进行",
    "monthend.running_other": "{month} 月结正在进行，请等其完成后再开始",
    "monthend.no_job": "本服务器尚未开始 {month} 的月结",
    "monthend.job_title": "{month} 月结",
    "monthend.started_by": "{actor} 于 {time} 开始，已用 {seconds} 秒",
    "monthend.phase.starting": "正在启动",
    "monthend.phase.reading": "正在读取名册",
    "monthend.phase.accruing": "正在核算发放",
    "monthend.phase.finishing": "正在封存台账并更新报表",
    "monthend.phase.done": "已完成",
    "monthend.phase.failed": "未完成",
    "monthend.progress": "已核算 {done} / {total} 人（{percent}%）",
    "monthend.progress_reading": "已读取 {done} 条",
    "monthend.rate": "每秒 {rate} 人",
    "monthend.leave": (
        "可以离开此页面，稍后回来查看进度。若服务器在月结中途重启，再次开始同一月份的月结即可："
        "台账保证每笔只发放一次，重新运行不会重复发放。"
    ),
    "monthend.refresh": "刷新进度",
    "monthend.done": "{month} 月结已完成，用时 {seconds} 秒",
    "monthend.payments": "新记发放",
    "monthend.payments_value": "{count} 笔，{amount}",
    "monthend.batches": "新批次",
    "monthend.late": "其中补发（逾期发放）",
    "monthend.reissued": "补发退回",
    "monthend.awaiting_account": "退回待更正账户",
    "monthend.already_accrued": "已记账未重复",
    "monthend.adjustments": "补发差额",
    "monthend.recoveries": "多发追回",
    "monthend.count": "{count} 笔",
    "monthend.count_amount": "{count} 笔，{amount}",
    "monthend.batch_links": "本次月结的批次",
    "monthend.all_batches": "查看 {month} 的全部批次",
    "monthend.failed": "{month} 月结未完成：",
    "monthend.failed_nothing": "已写入的发放保留在台账中，再次开始同一月份即可补完，不会重复发放。",
    "reissue.title": "补发退回",
    "reissue.summary": (
        "本批次退回 {returned} 笔：已补发 {reissued} 笔，账户已更正待补发 {ready} 笔，待更正账户 {awaiting} 笔"
    ),
    "reissue.how": (
        "退回的发放在账户或户名更正后由月结补发：将重新运行 {month} 月结，已记账的发放不会重复，"
        "只补记更正后的退回（以及此后登记的变更）。"
    ),
    "reissue.submit": "补发退回",
    "reissue.confirm": "重新运行 {month} 月结，补发 {ready} 笔已更正账户的退回？",
    "reissue.awaiting_only": "退回的发放须先更正账户（更换账户）或户名，再由月结补发。",
    "reissue.to_month_end": "前往月结",
    #
    # --- decisions and aid (decisions.py) ---
    #
    # --- reports (reports.py) ---
    #
    # --- audit (audit.py) ---
    #
}

# A refused rule, in the office's words; the rule's own name is shown beside it (the same as the CLI's).
RULES_ZH_CN: dict[str, str] = {
    "ApproverMustDifferFromExporter": "导出该批次的人不能批准它：须由另一名复核人批准",
    "BatchNotExported": "批次尚未导出，不能批准",
    "BatchAlreadyApproved": "批次已经批准过",
    "OnlyApprovedBatchesSubmit": "只有已批准的批次才能提交银行",
    "OnlyCheckersApprove": "只有复核人可以批准或提交银行",
    "OnlyApproversApprove": "只有复核人可以批准或提交银行",
    "OnlyClerksRecord": "只有经办人可以办理此项",
    "OnlyAdminsAdminister": "只有管理员可以办理此项",
    "AuditorIsReadOnly": "审计账户只能查看，不能更改台账",
    "AccountHasNoRole": "该账户没有角色，不能办理任何事项",
    "UnknownBatch": "找不到该批次",
    "ExportWouldOverwrite": "导出文件已存在且内容不同",
    "ApprovedBatchFilesAreKept": "已批准批次的文件不能替换",
    "ExportDiffersFromApproved": "已批准批次只能重新生成相同的文件",
    "EmptyBatch": "批次没有发放记录，无法导出",
    "ConcurrentChange": "他人同时修改了该批次，未记录任何内容，请重试",
    # --- roster and bank results (uploads.py) ---
    #
    # --- month-end and re-issue (monthend.py) ---
    "BadPeriod": "月份格式应为 YYYY-MM，例如 2017-02",
    "NoPolicy": "台账尚未载入政策（标准），不能月结：请管理员先载入政策",
    "PolicyRejected": "台账中的政策未通过校验，不能月结：请管理员载入更正后的政策",
    "RegionOutsidePolicy": "所选区划不在政策的区划之内",
    "RunConflict": "月结与其他写入反复冲突而停止：已写入的保留，请再次开始同一月份以补完",
    "PaymentAboveMaximum": "有发放金额超过台账允许的上限：整个月结未执行，请核对标准与名册",
    "NoStandardInForce": "该月没有生效的标准，不能核算",
    "AccountChanged": "账户在会话期间已变更（密码、角色或状态），请重新登录后再开始",
    "UnknownAccount": "找不到该账户",
    "MonthEndDied": "月结进程意外退出：已写入的保留，请再次开始同一月份以补完",
    "NothingToReissue": "本批次没有账户已更正、待补发的退回",
    #
    # --- decisions and aid (decisions.py) ---
    #
    # --- reports (reports.py) ---
    #
    # --- audit (audit.py) ---
    #
}


def t(key: str, /, **values: Any) -> str:
    """The catalogue's text for `key`, with `{name}` fields filled; an unknown key shows itself (a test
    catches it rather than a blank on the page)."""
    text = ZH_CN.get(key, key)
    return text.format(**values) if values else text


def rule_text(rule: str, detail: str) -> str:
    """A refusal as the page shows it: the rule in Chinese, then its name (as the CLI prints it)."""
    words = RULES_ZH_CN.get(rule)
    return f"{words}（{rule}）" if words else f"{rule}：{detail}"
