// SPDX-License-Identifier: MIT
// (being written)
#include <QTest>
class WidgetsTest : public QObject
{
    Q_OBJECT
};
QTEST_MAIN(WidgetsTest)
#include "widgets_test.moc"
