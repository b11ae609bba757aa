# Written by almadeliver: offline modular CASA (do not edit; rewritten when it changes)
import os
measurespath = '/work/wt-transfer/.venv/lib/python3.11/site-packages/casadata/__data__'
datapath = ['/work/wt-transfer/.venv/lib/python3.11/site-packages/casadata/__data__']
measures_auto_update = False
data_auto_update = False
skipnetworkcheck = True
nologger = True
nogui = True
cachedir = '/work/wt-transfer/tmp/transfer-dev/demo-out/home/casa'
logfile = os.environ.get('ALMADELIVER_CASA_LOGFILE') or os.path.join(cachedir, 'casa.log')
