# The two commands the README opens with: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test soak bench lint postgres browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf demo.db demo.db-wal demo.db-shm demo.db.key demo.db.key.sign demo.db.sessions-key demo-passwords \
	  demo-out demo-chart.png demo-anchor.json
	$(VENV)/bin/yikatong --db sqlite:///demo.db demo
	$(VENV)/bin/yikatong --db sqlite:///demo.db --as admin --password-file demo-passwords/admin \
	  audit anchor --out demo-anchor.json
	$(VENV)/bin/yikatong --db sqlite:///demo.db --as auditor --password-file demo-passwords/auditor \
	  audit verify --exports demo-out --anchor demo-anchor.json

# PostgreSQL is part of the test suite: start the local cluster when it is installed and down.
postgres:
	@if command -v pg_lsclusters >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then \
	  pg_lsclusters -h | grep -q online || \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	fi

# The web application is tested in a real browser: Debian's Chromium, driven by Playwright through its
# executable path (Playwright's own browser download cannot reach the internet here), with a CJK font so
# the pages' Chinese renders in the screenshots.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi wenquanyi; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium fonts-wqy-microhei >/dev/null; \
	  else sudo apt-get install -y -q chromium fonts-wqy-microhei >/dev/null; fi; \
	fi

test: $(STAMP) postgres browser
	$(VENV)/bin/ruff check domain ledger projections exporters tests benchmarks
	$(VENV)/bin/pytest

# The reliability harness at full size (tests/reliability): 200 kill points over a 10^4-payment month-end
# per store, 10x the model examples, 10 000 hostile inputs. Prints its figures.
soak: $(STAMP) postgres
	YIKATONG_SOAK=1 $(VENV)/bin/pytest tests/reliability -q -s

bench: $(STAMP) postgres
	$(VENV)/bin/pytest benchmarks --benchmark-enable -p no:randomly -q

lint: $(STAMP)
	$(VENV)/bin/ruff check domain ledger projections exporters tests benchmarks

clean:
	rm -rf $(VENV) demo.db demo.db-wal demo.db-shm demo.db.key demo-passwords .pytest_cache
